"""pjsua (pjproject's pjsua2 from PyPI, `pjsua2-python`) as a caller for tests/interop.rs.

Usage: pjsua_caller.py URI RECORDING.wav. Calls URI from 127.0.0.1 (SIP over UDP, media on
loopback, no sound device) and records what it hears to RECORDING.wav. Reads commands on
stdin (`dtmf DIGITS`: RFC 4733 events; `hangup`) and prints what happens on stdout, one line
each: `STATE <state> <last status code>`, `MEDIA active`, `CODEC <encoding/rate>`. Exits once
the call is disconnected.
"""

import select
import sys

import pjsua2 as pj


class Call(pj.Call):
    def __init__(self, account, recording):
        super().__init__(account)
        self.recording = recording
        self.recorder = None
        self.disconnected = False

    def onCallState(self, prm):
        info = self.getInfo()
        print(f"STATE {info.stateText} {info.lastStatusCode}", flush=True)
        if info.state == pj.PJSIP_INV_STATE_DISCONNECTED:
            self.disconnected = True

    def onCallMediaState(self, prm):
        info = self.getInfo()
        for index, media in enumerate(info.media):
            if media.type != pj.PJMEDIA_TYPE_AUDIO or media.status != pj.PJSUA_CALL_MEDIA_ACTIVE:
                continue
            if self.recorder is None:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(self.recording)
            self.getAudioMedia(index).startTransmit(self.recorder)
            stream = self.getStreamInfo(index)
            print(f"CODEC {stream.codecName}/{stream.codecClockRate}", flush=True)
            print("MEDIA active", flush=True)


def main():
    uri, recording = sys.argv[1], sys.argv[2]
    endpoint = pj.Endpoint()
    endpoint.libCreate()
    config = pj.EpConfig()
    config.uaConfig.threadCnt = 0
    config.uaConfig.mainThreadOnly = True
    config.logConfig.level = 1
    config.logConfig.consoleLevel = 1
    endpoint.libInit(config)
    transport = pj.TransportConfig()
    transport.port = 0
    transport.boundAddress = "127.0.0.1"
    transport.publicAddress = "127.0.0.1"
    endpoint.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    endpoint.libStart()
    endpoint.audDevManager().setNullDev()
    account_config = pj.AccountConfig()
    account_config.idUri = "sip:pjsua@127.0.0.1"
    account_config.mediaConfig.transportConfig.boundAddress = "127.0.0.1"
    account_config.mediaConfig.transportConfig.publicAddress = "127.0.0.1"
    account = pj.Account()
    account.create(account_config)
    call = Call(account, recording)
    call.makeCall(uri, pj.CallOpParam(True))
    while not call.disconnected:
        endpoint.libHandleEvents(20)
        if select.select([sys.stdin], [], [], 0)[0]:
            words = sys.stdin.readline().split()
            if not words:
                continue
            if words[0] == "dtmf":
                call.dialDtmf(words[1])
            elif words[0] == "hangup":
                call.hangup(pj.CallOpParam(True))
    # The recorder writes its WAV header when destroyed, before the library goes.
    call.recorder = None
    del call
    endpoint.libDestroy()


if __name__ == "__main__":
    main()

//! The call's side of conferences ([`crate::call::rooms`]): joining one, lending the call's
//! media leg to its mixer and taking it back, and word from the conference.

use crate::call::core::{Input, LegId, MediaRoute};
use crate::call::rooms::RoomMessage;
use crate::call::rooms::room::{LeftReason, SeatNotice, SeatOptions};
use crate::media::room_engine::RoomLeg;
use crate::media::stream::RtpStream;

use super::Driver;

impl Driver {
    /// `<Dial><Conference>`: the conference's answer goes to the core.
    pub(super) fn join_room(&mut self, name: &str, options: &SeatOptions) {
        let outcome = self.services.rooms.join(name, self.core.sid(), options);
        self.input(Input::RoomJoined(outcome));
    }

    /// The call's media leg goes to the conference's mixer.
    pub(super) async fn lend_to_room(&mut self, conference_sid: &str) {
        if self.route_involves(LegId::CALL) {
            self.set_route(MediaRoute::Apart).await;
        }
        let Some(stream) = self.leg(LegId::CALL).stream.take() else {
            tracing::warn!(call_sid = %self.core.sid(), "no media leg to lend to the conference");
            self.input(Input::RoomMediaBack(SeatNotice::Ended));
            return;
        };
        self.leg(LegId::CALL).live = false;
        let leg = match RtpStream::into_room_leg(Box::new(stream)) {
            Ok(leg) => leg,
            Err((stream, error)) => {
                tracing::error!(call_sid = %self.core.sid(), %error, "the media leg cannot go to the mixer");
                self.media_back(*stream, SeatNotice::Ended);
                return;
            }
        };
        let sid = self.core.sid().to_owned();
        tracing::debug!(call_sid = %sid, conference = %conference_sid, "media leg lent to the conference");
        if let Err(leg) = self
            .services
            .rooms
            .lend(conference_sid, &sid, Box::new(leg))
        {
            tracing::info!(call_sid = %sid, conference = %conference_sid, "the conference is over: the call keeps its media");
            self.room_leg_back(*leg, SeatNotice::Ended);
        }
    }

    /// The call leaves its conference (or ended while in it).
    pub(super) fn leave_room(&mut self, conference_sid: &str, reason: LeftReason) {
        let sid = self.core.sid().to_owned();
        self.services.rooms.left(conference_sid, &sid, reason);
    }

    pub(super) fn on_room_message(&mut self, message: RoomMessage) {
        match message {
            RoomMessage::Notice(notice) => self.input(Input::RoomNotice(notice)),
            RoomMessage::MediaBack { leg, notice } => self.room_leg_back(*leg, notice),
        }
    }

    fn room_leg_back(&mut self, leg: RoomLeg, notice: SeatNotice) {
        match RtpStream::from_room_leg(leg) {
            Ok(stream) => self.media_back(*stream, notice),
            Err(error) => {
                tracing::error!(call_sid = %self.core.sid(), %error, "the media leg could not be taken back from the mixer");
                self.input(Input::MediaLost {
                    leg: LegId::CALL,
                    reason: error.to_string(),
                });
            }
        }
    }

    fn media_back(&mut self, stream: RtpStream, notice: SeatNotice) {
        let leg = self.leg(LegId::CALL);
        leg.stream = Some(stream);
        leg.live = true;
        self.input(Input::RoomMediaBack(notice));
    }
}

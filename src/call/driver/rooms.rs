//! The call's side of conferences ([`crate::call::rooms`]): joining one, lending the call's
//! media leg to its mixer and taking it back, and word from the conference.

use crate::call::core::{Input, LegId, MediaRoute};
use crate::call::rooms::RoomMessage;
use crate::call::rooms::room::{LeftReason, SeatNotice, SeatOptions};
use crate::media::room_engine::RoomLeg;
use crate::media::stream::RtpStream;

use super::{Driver, Job};
use crate::store::RemoteConference;

impl Driver {
    /// `<Dial><Conference>`: the conference's answer goes to the core. On a store shared with
    /// other nodes, a conference of that name under way on another node is looked for first
    /// (unless one is under way here): the call then joins it through a SIP leg to its node
    /// ([`crate::call::cascade`]).
    pub(super) fn join_room(&mut self, name: &str, options: &SeatOptions) {
        let shared = self.services.config.store.is_some();
        if !shared || self.services.rooms.sid_of(name).is_some() {
            let outcome = self.services.rooms.join(name, self.core.sid(), options);
            return self.input(Input::RoomJoined(outcome));
        }
        let store = self.services.store.clone();
        let (name, options) = (name.to_owned(), Box::new(options.clone()));
        self.spawn_job(async move {
            let elsewhere = store
                .conference_elsewhere(&name)
                .await
                .unwrap_or_else(|error| {
                    tracing::warn!(%error, conference = %name, "the other nodes' conferences could not be read: the call joins one here");
                    None
                });
            Job::RoomLookedUp {
                name,
                options,
                elsewhere,
            }
        });
    }

    /// The conference named `name` is under way on another node (`elsewhere`), or not.
    pub(super) fn room_looked_up(
        &mut self,
        name: &str,
        options: &SeatOptions,
        elsewhere: Option<RemoteConference>,
    ) {
        let Some(remote) = elsewhere.filter(|_| self.services.rooms.sid_of(name).is_none()) else {
            let outcome = self.services.rooms.join(name, self.core.sid(), options);
            return self.input(Input::RoomJoined(outcome));
        };
        tracing::info!(call_sid = %self.core.sid(), conference = %remote.sid, node = %remote.node_id, "the conference runs on another node: joining it through a SIP leg");
        let now_unix = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.input(Input::RoomElsewhere {
            owner_sip_uri: remote.sip_uri,
            auth_token: self.services.config.auth_token.clone(),
            now_unix,
        });
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

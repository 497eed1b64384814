//! Typed request helpers: one method per operation of spec `client/transport.md` that a client
//! application needs, each checking that the answer has the type the operation calls for.

use mobium_spec::client::{
    ChannelCreate, ChannelInfo, ChannelJoin, ChannelRef, ChannelUpdate, DirectAck, DirectSend,
    DirectSent, History, InviteCreate, InviteInfo, KeyBundle, KeysClaim, KeysCount, KeysUpload,
    Member, MemberRef, MessageEdit, MessageSend, MessageSent, Messages, PresenceEntry, PresenceSet,
    PresenceStatus, Request, Response,
};
use mobium_spec::{ChannelId, MessageId, UserId};

use super::{Client, SdkError};

/// Unwraps the expected response variant or reports what came instead.
macro_rules! expect_response {
    ($resp:expr, $variant:ident) => {
        match $resp {
            Response::$variant(x) => Ok(x),
            other => Err(SdkError::UnexpectedResponse(format!("{other:?}"))),
        }
    };
}

/// Accepts `ok` (and, for forward compatibility, any response type this build does not know).
fn expect_ok(resp: Response) -> Result<(), SdkError> {
    match resp {
        Response::Ok | Response::Unknown => Ok(()),
        other => Err(SdkError::UnexpectedResponse(format!("{other:?}"))),
    }
}

impl Client {
    /// `ping`: an application-level liveness check.
    pub async fn ping(&self) -> Result<(), SdkError> {
        match self.request(Request::Ping).await? {
            Response::Pong | Response::Unknown => Ok(()),
            other => Err(SdkError::UnexpectedResponse(format!("{other:?}"))),
        }
    }

    /// `keys_upload`: publishes prekeys; answers the counts after the upload.
    pub async fn keys_upload(&self, upload: KeysUpload) -> Result<KeysCount, SdkError> {
        expect_response!(self.request(Request::KeysUpload(upload)).await?, KeysCount)
    }

    /// `keys_count`: own unclaimed one-time keys and whether a fallback key is published.
    pub async fn keys_count(&self) -> Result<KeysCount, SdkError> {
        expect_response!(self.request(Request::KeysCount).await?, KeysCount)
    }

    /// `keys_claim`: a key bundle of `user` (consumes one of their one-time keys).
    pub async fn keys_claim(&self, user: &UserId) -> Result<KeyBundle, SdkError> {
        let req = Request::KeysClaim(KeysClaim { user: user.clone() });
        expect_response!(self.request(req).await?, KeyBundle)
    }

    /// `direct_send`: opaque ciphertext to one user.
    pub async fn direct_send(
        &self,
        to: &UserId,
        ciphertext: Vec<u8>,
    ) -> Result<DirectSent, SdkError> {
        // Named, so that a send whose answer was lost in a reconnect is repeated safely.
        let req = Request::DirectSend(DirectSend {
            to: to.clone(),
            ciphertext,
            txn: Some(super::client::new_txn()).filter(|t| !t.is_empty()),
        });
        expect_response!(self.request(req).await?, DirectSent)
    }

    /// `direct_ack`: deletes processed to-device messages from the server's queue.
    pub async fn direct_ack(&self, ids: Vec<MessageId>) -> Result<u32, SdkError> {
        let req = Request::DirectAck(DirectAck { ids });
        Ok(expect_response!(self.request(req).await?, DirectAcked)?.removed)
    }

    /// `channel_create`: a channel hosted on this server, with encrypted metadata.
    pub async fn channel_create(&self, metadata: Vec<u8>) -> Result<ChannelId, SdkError> {
        let req = Request::ChannelCreate(ChannelCreate { metadata });
        Ok(expect_response!(self.request(req).await?, ChannelCreated)?.channel)
    }

    /// `channel_update`: replaces a channel's encrypted metadata.
    pub async fn channel_update(
        &self,
        channel: &ChannelId,
        metadata: Vec<u8>,
    ) -> Result<(), SdkError> {
        let req = Request::ChannelUpdate(ChannelUpdate {
            channel: channel.clone(),
            metadata,
        });
        expect_ok(self.request(req).await?)
    }

    /// `channel_list`: the caller's channels.
    pub async fn channel_list(&self) -> Result<Vec<ChannelInfo>, SdkError> {
        Ok(expect_response!(self.request(Request::ChannelList).await?, Channels)?.channels)
    }

    /// `channel_members`: members in join order.
    pub async fn channel_members(&self, channel: &ChannelId) -> Result<Vec<Member>, SdkError> {
        let req = Request::ChannelMembers(ChannelRef {
            channel: channel.clone(),
        });
        Ok(expect_response!(self.request(req).await?, Members)?.members)
    }

    /// `invite_create`: an invite link.
    pub async fn invite_create(
        &self,
        channel: &ChannelId,
        max_uses: Option<u32>,
        expires_in_secs: Option<u64>,
    ) -> Result<InviteInfo, SdkError> {
        let req = Request::InviteCreate(InviteCreate {
            channel: channel.clone(),
            max_uses,
            expires_in_secs,
        });
        expect_response!(self.request(req).await?, Invite)
    }

    /// `channel_join`: redeems an invite code (`code` or `code@host`).
    pub async fn channel_join(&self, code: &str) -> Result<ChannelInfo, SdkError> {
        let req = Request::ChannelJoin(ChannelJoin {
            code: code.to_owned(),
        });
        expect_response!(self.request(req).await?, Joined)
    }

    /// `channel_leave`.
    pub async fn channel_leave(&self, channel: &ChannelId) -> Result<(), SdkError> {
        let req = Request::ChannelLeave(ChannelRef {
            channel: channel.clone(),
        });
        expect_ok(self.request(req).await?)
    }

    /// `channel_kick`: removes a member (who may rejoin with an invite).
    pub async fn channel_kick(&self, channel: &ChannelId, user: &UserId) -> Result<(), SdkError> {
        let req = Request::ChannelKick(MemberRef {
            channel: channel.clone(),
            user: user.clone(),
        });
        expect_ok(self.request(req).await?)
    }

    /// `message_send`: Megolm ciphertext to a channel.
    pub async fn message_send(
        &self,
        channel: &ChannelId,
        ciphertext: Vec<u8>,
        reply_to: Option<MessageId>,
    ) -> Result<MessageSent, SdkError> {
        // Named, so that a send whose answer was lost in a reconnect is repeated safely.
        let req = Request::MessageSend(MessageSend {
            channel: channel.clone(),
            ciphertext,
            reply_to,
            txn: Some(super::client::new_txn()).filter(|t| !t.is_empty()),
        });
        expect_response!(self.request(req).await?, MessageSent)
    }

    /// `message_edit`: replaces a message's ciphertext.
    pub async fn message_edit(
        &self,
        channel: &ChannelId,
        id: MessageId,
        ciphertext: Vec<u8>,
    ) -> Result<(), SdkError> {
        let req = Request::MessageEdit(MessageEdit {
            channel: channel.clone(),
            id,
            ciphertext,
        });
        expect_ok(self.request(req).await?)
    }

    /// `history`: one page of a channel's stored messages, ascending by id.
    pub async fn history(&self, query: History) -> Result<Messages, SdkError> {
        expect_response!(self.request(Request::History(query)).await?, Messages)
    }

    /// `presence_set`: own status for the rest of the session.
    pub async fn presence_set(&self, status: PresenceStatus) -> Result<(), SdkError> {
        expect_ok(
            self.request(Request::PresenceSet(PresenceSet { status }))
                .await?,
        )
    }

    /// `presence_list`: everyone who shares a channel with the caller.
    pub async fn presence_list(&self) -> Result<Vec<PresenceEntry>, SdkError> {
        Ok(expect_response!(self.request(Request::PresenceList).await?, Presences)?.entries)
    }
}

/// Members' user ids, for the common case of not needing join times or roles.
pub fn member_ids(members: &[Member]) -> Vec<UserId> {
    members.iter().map(|m| m.user.clone()).collect()
}

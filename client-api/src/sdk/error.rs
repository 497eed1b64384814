//! The SDK's error type: what can go wrong between sending a request and reading its answer.

use mobium_spec::client::ErrorBody;

/// What can go wrong on the client side.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The WebSocket could not be opened or broke.
    #[error("connection: {0}")]
    Connection(String),
    /// The server sent something this client does not understand.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The server answered with an error.
    #[error("server error {}: {}", .0.code, .0.message)]
    Server(ErrorBody),
    /// No answer within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The connection is closed. For a request that was already sent, its outcome is unknown:
    /// the server may or may not have executed it.
    #[error("connection closed")]
    Closed,
    /// The server answered with a response of another type than the request calls for.
    #[error("unexpected response: {0}")]
    UnexpectedResponse(String),
}

impl SdkError {
    /// The server's error code, if this is a server error.
    pub fn code(&self) -> Option<mobium_spec::ErrorCode> {
        match self {
            SdkError::Server(e) => Some(e.code),
            _ => None,
        }
    }
}

//! The numbered codes: request errors (in replies) and disconnect reasons (in
//! the `disconnect` push and the close frame). Numbers never change meaning.

use crate::reply::ErrorBody;

/// Request errors. 100–199 are the client's fault and the connection stays up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// 100: not valid JSON, not a known request shape, or data nested too deep.
    BadRequest = 100,
    /// 101: the `op` is not one the server knows.
    UnknownOp = 101,
    /// 102: the channel name is empty, too long or has forbidden characters.
    BadChannel = 102,
    /// 103: the operation is not allowed (permissions, or clients may not publish).
    PermissionDenied = 103,
    /// 104: already subscribed to this channel.
    AlreadySubscribed = 104,
    /// 105: not subscribed to this channel.
    NotSubscribed = 105,
    /// 106: the connection has as many subscriptions as allowed.
    TooManySubscriptions = 106,
    /// 107: the feature is turned off for this namespace (history, presence).
    NotAvailable = 107,
    /// 108: the published data (or an HTTP API body) is larger than allowed.
    MessageTooLarge = 108,
    /// 109: too many requests; slow down.
    RateLimited = 109,
    /// 110: binary frames are not part of the protocol.
    BinaryNotSupported = 110,
    /// 111: a token is required, or the one given is malformed, expired or
    /// wrongly signed.
    Unauthorized = 111,
    /// 112: the engine holding channels' state could not answer; retry later.
    Unavailable = 112,
    /// 113: no such SSE or long-poll session (never opened, expired or
    /// ended): open a new one.
    UnknownSession = 113,
    /// 114: a long-poll cursor (or SSE `Last-Event-ID`) the session cannot
    /// resume from: ahead of what was sent, or behind what was acknowledged.
    BadCursor = 114,
}

impl ErrorCode {
    /// Every code, in order.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadRequest,
        ErrorCode::UnknownOp,
        ErrorCode::BadChannel,
        ErrorCode::PermissionDenied,
        ErrorCode::AlreadySubscribed,
        ErrorCode::NotSubscribed,
        ErrorCode::TooManySubscriptions,
        ErrorCode::NotAvailable,
        ErrorCode::MessageTooLarge,
        ErrorCode::RateLimited,
        ErrorCode::BinaryNotSupported,
        ErrorCode::Unauthorized,
        ErrorCode::Unavailable,
        ErrorCode::UnknownSession,
        ErrorCode::BadCursor,
    ];

    /// The error body for this code with `detail` as its message.
    pub fn body(self, detail: impl std::fmt::Display) -> ErrorBody {
        ErrorBody {
            code: self as u16,
            message: detail.to_string(),
        }
    }

    /// The code with this number, if there is one.
    pub fn from_number(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|code| *code as u16 == number)
    }

    /// The HTTP status the HTTP API (and the HTTP transports) answer this
    /// error with.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::PermissionDenied => 403,
            ErrorCode::NotAvailable => 404,
            ErrorCode::MessageTooLarge => 413,
            ErrorCode::RateLimited => 429,
            ErrorCode::Unauthorized => 401,
            ErrorCode::Unavailable => 503,
            ErrorCode::UnknownSession => 404,
            ErrorCode::BadCursor => 409,
            _ => 400,
        }
    }
}

/// Why the server ends a session. Sent in a `disconnect` push, then as the
/// WebSocket close code ([`DisconnectCode::close_code`]: the same number, but
/// for shutdown and the rate limit, which use the standard codes).
/// 4000–4499: reconnect is advised; 4500–4999: do not reconnect as is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum DisconnectCode {
    /// 4000: the server is shutting down or restarting (close code 1001).
    Shutdown = 4000,
    /// 4001: the client could not keep up; it should reconnect and recover.
    SlowConsumer = 4001,
    /// 4002: no pong or message within the heartbeat timeout.
    NoPong = 4002,
    /// 4003: a subscribed channel's history was lost (its epoch changed, or
    /// publications missed on the way between nodes could not be read back):
    /// reconnect and recover; the subscribe answers `recovered: false`.
    Reset = 4003,
    /// 4500: reserved for repeated protocol violations (not sent today:
    /// WebSocket-level violations close with 1002, 1007 or 1009 alone).
    BadProtocol = 4500,
    /// 4501: disconnected through the HTTP API (`POST /api/disconnect`).
    Kicked = 4501,
    /// 4502: the client went on past a whole burst of error-109 refusals
    /// (close code 1008, policy violation).
    RateLimited = 4502,
}

impl DisconnectCode {
    /// Every code, in order.
    pub const ALL: [DisconnectCode; 7] = [
        DisconnectCode::Shutdown,
        DisconnectCode::SlowConsumer,
        DisconnectCode::NoPong,
        DisconnectCode::Reset,
        DisconnectCode::BadProtocol,
        DisconnectCode::Kicked,
        DisconnectCode::RateLimited,
    ];

    /// The code with this number, if there is one.
    pub fn from_number(number: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|code| *code as u16 == number)
    }

    /// Whether a client should reconnect after this.
    pub fn reconnect(self) -> bool {
        (self as u16) < 4500
    }

    /// The WebSocket close code that ends the connection.
    pub fn close_code(self) -> u16 {
        match self {
            DisconnectCode::Shutdown => 1001,
            DisconnectCode::RateLimited => 1008,
            other => other as u16,
        }
    }

    /// The reason sent in the push and the close frame.
    pub fn reason(self) -> &'static str {
        match self {
            DisconnectCode::Shutdown => "server shutting down",
            DisconnectCode::SlowConsumer => "slow consumer",
            DisconnectCode::NoPong => "no pong",
            DisconnectCode::Reset => "channel history reset",
            DisconnectCode::BadProtocol => "protocol violations",
            DisconnectCode::Kicked => "disconnected by the server",
            DisconnectCode::RateLimited => "rate limit exceeded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_map_back_to_their_codes() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_number(code as u16), Some(code));
        }
        for code in DisconnectCode::ALL {
            assert_eq!(DisconnectCode::from_number(code as u16), Some(code));
            assert_eq!(code.reconnect(), (code as u16) < 4500);
        }
        assert_eq!(ErrorCode::from_number(199), None);
        let unknown = ErrorBody {
            code: 199,
            message: String::new(),
        };
        assert_eq!(unknown.http_status(), 400);
    }
}

//! What a line typed into `tether connect` asks for.

use base64::Engine;
use bytes::Bytes;

/// One line of input, understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this message.
    Send(tether::Message),
    /// Send a close frame with this code and reason, then wait for the answer.
    Close(u16, String),
    /// Print the command list.
    Help,
}

/// How pipe-mode lines (and `/binary` payloads) are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Encoding {
    /// Hexadecimal digits (spaces allowed).
    Hex,
    /// Standard base64.
    Base64,
}

/// The commands, for `/help`.
pub const HELP: &str = "\
  text                send a text message (`//text` sends one starting with `/`)
  /text TEXT          send TEXT as a text message
  /hex DEADBEEF       send a binary message given in hex
  /base64 3q2+7w==    send a binary message given in base64
  /ping [TEXT]        send a ping (the pong is printed when it arrives)
  /pong [TEXT]        send an unsolicited pong
  /close [CODE [REASON]]  close (default 1000) and wait for the answer
  /quit               close with 1000
  /help               this list";

/// Decodes `text` as binary in `encoding`.
pub fn decode(text: &str, encoding: Encoding) -> Result<Bytes, String> {
    match encoding {
        Encoding::Hex => {
            let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
            if digits.len() % 2 != 0 {
                return Err("hex needs an even number of digits".into());
            }
            digits
                .chunks(2)
                .map(|pair| {
                    let pair = std::str::from_utf8(pair).map_err(|e| e.to_string())?;
                    u8::from_str_radix(pair, 16).map_err(|_| format!("{pair:?} is not hex"))
                })
                .collect::<Result<Vec<u8>, String>>()
                .map(Bytes::from)
        }
        Encoding::Base64 => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(Bytes::from)
            .map_err(|e| format!("bad base64: {e}")),
    }
}

/// Encodes binary for display.
pub fn encode(bytes: &[u8], encoding: Encoding) -> String {
    match encoding {
        Encoding::Hex => bytes.iter().map(|b| format!("{b:02x}")).collect(),
        Encoding::Base64 => base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

/// A control frame payload: at most 125 bytes.
fn control(text: &str) -> Result<Bytes, String> {
    if text.len() > 125 {
        return Err("a ping or pong carries at most 125 bytes".into());
    }
    Ok(Bytes::copy_from_slice(text.as_bytes()))
}

/// Understands an interactive line: plain text, or a `/command`.
pub fn parse(line: &str) -> Result<Action, String> {
    let Some(command) = line.strip_prefix('/') else {
        return Ok(Action::Send(tether::Message::text(line)));
    };
    if command.starts_with('/') {
        return Ok(Action::Send(tether::Message::text(command)));
    }
    let (name, rest) = command.split_once(' ').unwrap_or((command, ""));
    match name {
        "text" => Ok(Action::Send(tether::Message::text(rest))),
        "hex" => decode(rest, Encoding::Hex).map(|b| Action::Send(tether::Message::Binary(b))),
        "base64" => {
            decode(rest, Encoding::Base64).map(|b| Action::Send(tether::Message::Binary(b)))
        }
        "ping" => control(rest).map(|b| Action::Send(tether::Message::Ping(b))),
        "pong" => control(rest).map(|b| Action::Send(tether::Message::Pong(b))),
        "close" => {
            let (code, reason) = rest.trim().split_once(' ').unwrap_or((rest.trim(), ""));
            let code = if code.is_empty() {
                1000
            } else {
                code.parse::<u16>()
                    .map_err(|_| format!("{code:?} is not a close code"))?
            };
            let allowed = tether::CloseCode(code).is_allowed_on_wire();
            if !allowed {
                return Err(format!("{code} may not be sent in a close frame"));
            }
            if reason.len() > 123 {
                return Err("a close reason is at most 123 bytes".into());
            }
            Ok(Action::Close(code, reason.to_owned()))
        }
        "quit" | "exit" => Ok(Action::Close(1000, String::new())),
        "help" | "?" => Ok(Action::Help),
        other => Err(format!("unknown command /{other}; /help lists them")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether::Message;

    #[test]
    fn understands_text_and_commands() {
        assert_eq!(parse("hello"), Ok(Action::Send(Message::text("hello"))));
        assert_eq!(parse("//etc"), Ok(Action::Send(Message::text("/etc"))));
        assert_eq!(parse("/text /x"), Ok(Action::Send(Message::text("/x"))));
        assert_eq!(
            parse("/hex de ad be ef"),
            Ok(Action::Send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])))
        );
        assert_eq!(
            parse("/base64 3q2+7w=="),
            Ok(Action::Send(Message::binary(vec![0xde, 0xad, 0xbe, 0xef])))
        );
        assert_eq!(
            parse("/ping hi"),
            Ok(Action::Send(Message::Ping(Bytes::from_static(b"hi"))))
        );
        assert_eq!(parse("/close"), Ok(Action::Close(1000, String::new())));
        assert_eq!(
            parse("/close 4000 see you"),
            Ok(Action::Close(4000, "see you".into()))
        );
        assert_eq!(parse("/quit"), Ok(Action::Close(1000, String::new())));
        assert_eq!(parse("/help"), Ok(Action::Help));
    }

    #[test]
    fn refuses_what_cannot_be_sent() {
        assert!(parse("/hex abc").is_err(), "odd digits");
        assert!(parse("/hex zz").is_err());
        assert!(parse("/base64 !!").is_err());
        assert!(parse("/close 1005").is_err(), "reserved code");
        assert!(parse("/close abc").is_err());
        assert!(parse(&format!("/ping {}", "x".repeat(126))).is_err());
        assert!(parse("/frobnicate").is_err());
    }

    #[test]
    fn encodes_for_display() {
        assert_eq!(encode(&[0xde, 0xad], Encoding::Hex), "dead");
        assert_eq!(
            encode(&[0xde, 0xad, 0xbe, 0xef], Encoding::Base64),
            "3q2+7w=="
        );
    }
}

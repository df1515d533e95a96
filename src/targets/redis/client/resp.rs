//! The part of RESP2 an admin client needs: commands out as arrays of bulk strings, replies in
//! as any RESP2 value.

/// Replies larger than this are refused rather than buffered: no admin reply comes close.
pub(super) const MAX_REPLY_BYTES: usize = 64 * 1024 * 1024;

/// Deeper nesting than any reply of the commands used here; bounds the recursion.
const MAX_DEPTH: usize = 8;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Value {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Vec<u8>),
    Null,
    Array(Vec<Value>),
}

impl Value {
    /// The text of a simple or bulk string.
    pub(super) fn text(&self) -> Option<&str> {
        match self {
            Value::Simple(s) => Some(s),
            Value::Bulk(b) => std::str::from_utf8(b).ok(),
            _ => None,
        }
    }

    /// The value of `key` in a flat key/value array, as RESP2 sends maps.
    pub(super) fn field(&self, key: &str) -> Option<&Value> {
        let Value::Array(items) = self else {
            return None;
        };
        items
            .chunks_exact(2)
            .find(|pair| pair[0].text() == Some(key))
            .map(|pair| &pair[1])
    }
}

/// `*<n>\r\n` then `$<len>\r\n<arg>\r\n` per argument.
pub(super) fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed RESP reply: {0}")]
pub(super) struct Malformed(pub(super) &'static str);

/// One complete value at the start of `buf` and the bytes it takes, or `None` when more bytes
/// are needed.
pub(super) fn parse(buf: &[u8]) -> Result<Option<(Value, usize)>, Malformed> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Result<Option<(Value, usize)>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed("nested too deeply"));
    }
    let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..end].split_first() else {
        return Err(Malformed("empty line"));
    };
    let line = std::str::from_utf8(line).map_err(|_| Malformed("line is not UTF-8"))?;
    let after = end + 2;
    let value = match kind {
        b'+' => Value::Simple(line.to_owned()),
        b'-' => Value::Error(line.to_owned()),
        b':' => Value::Integer(line.parse().map_err(|_| Malformed("bad integer"))?),
        b'$' => {
            let len: i64 = line.parse().map_err(|_| Malformed("bad bulk length"))?;
            if len < 0 {
                return Ok(Some((Value::Null, after)));
            }
            let len = usize::try_from(len).map_err(|_| Malformed("bad bulk length"))?;
            if len > MAX_REPLY_BYTES {
                return Err(Malformed("bulk string too large"));
            }
            if buf.len() < after + len + 2 {
                return Ok(None);
            }
            if &buf[after + len..after + len + 2] != b"\r\n" {
                return Err(Malformed("bulk string not terminated"));
            }
            return Ok(Some((
                Value::Bulk(buf[after..after + len].to_vec()),
                after + len + 2,
            )));
        }
        b'*' => {
            let count: i64 = line.parse().map_err(|_| Malformed("bad array length"))?;
            if count < 0 {
                return Ok(Some((Value::Null, after)));
            }
            let count = usize::try_from(count).map_err(|_| Malformed("bad array length"))?;
            // Each element takes at least 3 bytes: refuse absurd counts before allocating.
            if count > MAX_REPLY_BYTES / 3 {
                return Err(Malformed("array too large"));
            }
            let mut items = Vec::with_capacity(count.min(1024));
            let mut at = after;
            for _ in 0..count {
                let Some((item, used)) = parse_at(&buf[at..], depth + 1)? else {
                    return Ok(None);
                };
                items.push(item);
                at += used;
            }
            return Ok(Some((Value::Array(items), at)));
        }
        _ => return Err(Malformed("unknown type byte")),
    };
    Ok(Some((value, after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_bulk_string_arrays() {
        assert_eq!(
            encode(&[b"ACL", b"GETUSER", b"a b"]),
            b"*3\r\n$3\r\nACL\r\n$7\r\nGETUSER\r\n$3\r\na b\r\n"
        );
    }

    #[test]
    fn parses_every_type() {
        let reply =
            b"*6\r\n+OK\r\n-ERR bad\r\n:-7\r\n$5\r\nhe\r\no\r\n$-1\r\n*2\r\n*0\r\n*-1\r\nrest";
        let (value, used) = parse(reply).unwrap().unwrap();
        assert_eq!(used, reply.len() - 4);
        assert_eq!(
            value,
            Value::Array(vec![
                Value::Simple("OK".into()),
                Value::Error("ERR bad".into()),
                Value::Integer(-7),
                Value::Bulk(b"he\r\no".to_vec()),
                Value::Null,
                Value::Array(vec![Value::Array(vec![]), Value::Null]),
            ])
        );
    }

    #[test]
    fn waits_for_incomplete_replies() {
        let reply = b"*2\r\n$5\r\nhello\r\n:1\r\n";
        for cut in 0..reply.len() {
            assert_eq!(parse(&reply[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse(reply).unwrap().is_some());
    }

    #[test]
    fn refuses_malformed_replies() {
        assert!(parse(b"?x\r\n").is_err());
        assert!(parse(b":x\r\n").is_err());
        assert!(parse(b"$3\r\nabcde\r\n").is_err());
        assert!(parse(b"*999999999999\r\n").is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(parse(deep.as_bytes()).is_err());
    }

    #[test]
    fn reads_fields_of_flat_maps() {
        let map = Value::Array(vec![
            Value::Bulk(b"flags".to_vec()),
            Value::Array(vec![]),
            Value::Bulk(b"passwords".to_vec()),
            Value::Array(vec![Value::Bulk(b"ab".to_vec())]),
        ]);
        assert_eq!(
            map.field("passwords"),
            Some(&Value::Array(vec![Value::Bulk(b"ab".to_vec())]))
        );
        assert_eq!(map.field("nope"), None);
    }
}

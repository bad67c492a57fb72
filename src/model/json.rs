//! Checks on free-form JSON that every backend must agree on.

use serde_json::Value;

use crate::error::{Error, Result};

/// Refuses JSON holding a NUL character in any string or key: PostgreSQL's
/// `jsonb` cannot store one, so accepting it would make backends disagree.
pub(crate) fn refuse_nul(field: &'static str, value: &Value) -> Result<()> {
    let bad = |what: &str| {
        Err(Error::invalid_input(
            field,
            format_args!("{what} holds a NUL character (\\u0000), which cannot be stored"),
        ))
    };
    match value {
        Value::String(s) if s.contains('\0') => bad("a string"),
        Value::Array(items) => items.iter().try_for_each(|v| refuse_nul(field, v)),
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.contains('\0') {
                return bad("a key");
            }
            refuse_nul(field, v)
        }),
        _ => Ok(()),
    }
}

/// The size of `value` serialized, counted without building the string.
pub(crate) fn serialized_len(value: &Value) -> usize {
    struct ByteCount(usize);
    impl std::io::Write for ByteCount {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = ByteCount(0);
    // Serializing a `Value` into a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nul_anywhere_is_refused_with_the_field() {
        assert!(refuse_nul("config", &json!({"a": [1, "ok", {"b": null}]})).is_ok());
        for bad in [json!("a\0"), json!({"k\0": 1}), json!([{"x": ["\0"]}])] {
            assert_eq!(
                refuse_nul("config", &bad).unwrap_err().field(),
                Some("config")
            );
        }
    }

    #[test]
    fn serialized_len_matches_to_string() {
        let v = json!({"a": "é", "b": [1, 2.5, null]});
        assert_eq!(serialized_len(&v), v.to_string().len());
    }
}

//! Shared checks for the fuzz targets in `fuzz_targets/`.
//!
//! Every target holds the crate to its promise for untrusted input: nothing
//! panics, and every refusal is an [`ErrorKind::InvalidInput`] error that
//! names the offending field.

use std::borrow::Cow;

use tenancy::ErrorKind;

/// The input as text: borrowed when it is UTF-8, otherwise converted lossily
/// (invalid sequences become U+FFFD), so that every input reaches the parsers.
pub fn text(data: &[u8]) -> Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// The accepted value, or `None` after checking that the refusal is typed:
/// `InvalidInput`, naming a field, with a `Display` that does not panic.
/// Anything else panics, which libFuzzer reports as a crash.
#[track_caller]
pub fn accepted<T>(call: &str, result: tenancy::Result<T>) -> Option<T> {
    match result {
        Ok(value) => Some(value),
        Err(err) => {
            assert_eq!(
                err.kind(),
                ErrorKind::InvalidInput,
                "{call} refused with a kind other than InvalidInput: {err:?}"
            );
            assert!(
                err.field().is_some(),
                "{call} refused with InvalidInput naming no field: {err:?}"
            );
            let _message = err.to_string();
            None
        }
    }
}

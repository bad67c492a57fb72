//! Shared checks and input reading for the fuzz targets in `fuzz_targets/`.
//!
//! Every target holds the crate to its promise for untrusted input: nothing
//! panics, and every refusal is an [`ErrorKind::InvalidInput`] error that
//! names the offending field.

use std::borrow::Cow;

use rust_decimal::Decimal;
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

/// The input, read front to back as a little-endian byte layout; a read
/// past the end gives zeros, so every input decodes.
#[derive(Debug)]
pub struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Bytes(data)
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn take<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0; N];
        let n = N.min(self.0.len());
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        out
    }

    /// The next byte.
    pub fn u8(&mut self) -> u8 {
        self.take::<1>()[0]
    }

    /// The next 2 bytes as a `u16`.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.take())
    }

    /// The next 2 bytes as an `i16`.
    pub fn i16(&mut self) -> i16 {
        i16::from_le_bytes(self.take())
    }

    /// The next 4 bytes as a `u32`.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.take())
    }

    /// The next 4 bytes as an `i32`.
    pub fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.take())
    }

    /// The next 8 bytes as a `u64`.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.take())
    }

    /// The next 8 bytes as an `i64`.
    pub fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.take())
    }

    /// A `u8`, as an index below `len` (not zero).
    pub fn index(&mut self, len: usize) -> usize {
        usize::from(self.u8()) % len
    }

    /// A `u16` length, then that many bytes (as many as are left) as text,
    /// lossy when not UTF-8.
    pub fn text(&mut self) -> String {
        let len = usize::from(self.u16()).min(self.0.len());
        let (text, rest) = self.0.split_at(len);
        self.0 = rest;
        String::from_utf8_lossy(text).into_owned()
    }

    /// Any `Decimal` from its raw parts: `u32` lo, mid and hi, then a `u8`
    /// (bit 7 negative, the rest the scale mod 29).
    pub fn raw_decimal(&mut self) -> Decimal {
        let (lo, mid, hi) = (self.u32(), self.u32(), self.u32());
        let flags = self.u8();
        Decimal::from_parts(lo, mid, hi, flags & 0x80 != 0, u32::from(flags & 0x7f) % 29)
    }
}

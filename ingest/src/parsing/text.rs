//! The bytes of a text file (plain, markdown, HTML, CSV, JSON): UTF-8 or
//! BOM-marked UTF-16, decoded, never guessed at.

use bytes::Bytes;
use docpipe_core::error::Rejection;

/// UTF-8 (with or without BOM) or BOM-marked UTF-16; anything else is refused
/// rather than guessed at, and so is a NUL character (no text holds one, and
/// Postgres cannot store it).
pub(super) fn decode(bytes: Bytes) -> Result<String, Rejection> {
    let utf16 = |bytes: &[u8], to_u16: fn([u8; 2]) -> u16| {
        let units: Vec<u16> = bytes
            .chunks_exact(2)
            .map(|pair| to_u16([pair[0], pair[1]]))
            .collect();
        if let Some(unit) = units.iter().position(|&u| u == 0) {
            // Offset in the file: the BOM, then two bytes a unit.
            return Err(Rejection::Binary {
                offset: 2 + 2 * unit,
            });
        }
        String::from_utf16(&units).map_err(|_| Rejection::NotUtf8 { offset: 0 })
    };
    match bytes[..] {
        [0xEF, 0xBB, 0xBF, ..] => utf8(bytes.slice(3..)),
        [0xFF, 0xFE, ref rest @ ..] => utf16(rest, u16::from_le_bytes),
        [0xFE, 0xFF, ref rest @ ..] => utf16(rest, u16::from_be_bytes),
        _ => utf8(bytes),
    }
}

fn utf8(bytes: Bytes) -> Result<String, Rejection> {
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(Rejection::Binary { offset });
    }
    // No copy when the buffer is ours alone.
    String::from_utf8(Vec::from(bytes)).map_err(|e| Rejection::NotUtf8 {
        offset: e.utf8_error().valid_up_to(),
    })
}

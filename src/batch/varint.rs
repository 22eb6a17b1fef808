//! Kafka's zigzag varints (protobuf `sint32`/`sint64`), read with the same bounds as Kafka's
//! `ByteUtils`: at most 5 bytes for a varint and 10 for a varlong.

/// Why a varint could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VarintError {
    /// The data ends inside it.
    Truncated,
    /// More continuation bytes than the type allows.
    Malformed,
}

/// Reads a varint at `data[*pos..]` and moves `pos` past it.
#[inline]
pub(crate) fn read_varint(data: &[u8], pos: &mut usize) -> Result<i32, VarintError> {
    let mut raw: u32 = 0;
    let mut shift = 0u32;
    loop {
        let b = *data.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        raw |= u32::from(b & 0x7f).wrapping_shl(shift);
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 {
            return Err(VarintError::Malformed);
        }
    }
    Ok(((raw >> 1) as i32) ^ -((raw & 1) as i32))
}

/// Reads a varlong at `data[*pos..]` and moves `pos` past it.
#[inline]
pub(crate) fn read_varlong(data: &[u8], pos: &mut usize) -> Result<i64, VarintError> {
    let mut raw: u64 = 0;
    let mut shift = 0u32;
    loop {
        let b = *data.get(*pos).ok_or(VarintError::Truncated)?;
        *pos += 1;
        raw |= u64::from(b & 0x7f).wrapping_shl(shift);
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return Err(VarintError::Malformed);
        }
    }
    Ok(((raw >> 1) as i64) ^ -((raw & 1) as i64))
}

/// Appends `v` as a varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, v: i32) {
    put_raw(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
}

/// Appends `v` as a varlong.
pub(crate) fn put_varlong(out: &mut Vec<u8>, v: i64) {
    put_raw(out, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_raw(out: &mut Vec<u8>, mut raw: u64) {
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Bytes `v` takes as a varint.
pub(crate) fn varint_len(v: i32) -> usize {
    raw_len(u64::from(((v << 1) ^ (v >> 31)) as u32))
}

/// Bytes `v` takes as a varlong.
pub(crate) fn varlong_len(v: i64) -> usize {
    raw_len(((v << 1) ^ (v >> 63)) as u64)
}

fn raw_len(raw: u64) -> usize {
    (64 - (raw | 1).leading_zeros() as usize).div_ceil(7)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_at_the_edges() {
        for v in [0, 1, -1, 63, -64, 64, 300, -300, i32::MAX, i32::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varint(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
        for v in [0, 1, -1, i64::from(i32::MAX) + 1, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            assert_eq!(out.len(), varlong_len(v), "{v}");
            let mut pos = 0;
            assert_eq!(read_varlong(&out, &mut pos), Ok(v));
            assert_eq!(pos, out.len());
        }
    }

    #[test]
    fn known_encodings_match_kafka() {
        // Zigzag: 0 -> 00, -1 -> 01, 1 -> 02, 150 -> ac 02.
        let mut out = Vec::new();
        for v in [0, -1, 1, 150] {
            put_varint(&mut out, v);
        }
        assert_eq!(out, [0x00, 0x01, 0x02, 0xac, 0x02]);
    }

    #[test]
    fn overlong_and_truncated_varints_are_refused() {
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80; 6], &mut pos), Err(VarintError::Malformed));
        let mut pos = 0;
        assert_eq!(read_varint(&[0x80, 0x80], &mut pos), Err(VarintError::Truncated));
        let mut pos = 0;
        assert_eq!(read_varlong(&[0xff; 11], &mut pos), Err(VarintError::Malformed));
        let mut pos = 0;
        assert_eq!(read_varint(&[], &mut pos), Err(VarintError::Truncated));
    }
}

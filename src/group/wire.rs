//! Reading Kafka's primitive types out of the bytes the group coordinator stores and is handed:
//! the classic records of `__consumer_offsets` (`offsets.rs`), the KIP-848 records
//! (`consumer_records.rs`) and the consumer protocol's subscription and assignment bytes
//! (`consumer/embedded.rs`). One bounds-checked reader serves all three: every length is checked
//! against the bytes left before anything is taken, and every error is a message naming what was
//! being read, never a panic.

/// A cursor over `data`. `flexible` selects compact (varint) lengths and tagged fields, as the
/// flexible versions of Kafka's schemas have; otherwise lengths are int16 (strings) or int32
/// (bytes, arrays).
pub(super) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    flexible: bool,
    /// What the bytes are, for error messages ("record", "consumer protocol data").
    what: &'static str,
}

impl<'a> Reader<'a> {
    pub(super) fn new(data: &'a [u8], flexible: bool) -> Self {
        Reader {
            data,
            pos: 0,
            flexible,
            what: "record",
        }
    }

    /// Names the bytes in error messages (`"record"` unless set).
    pub(super) fn of(mut self, what: &'static str) -> Self {
        self.what = what;
        self
    }

    fn left(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(super) fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let end = self.pos.checked_add(n).ok_or("length overflow")?;
        let s = self
            .data
            .get(self.pos..end)
            .ok_or_else(|| format!("{} ends early at byte {}", self.what, self.pos))?;
        self.pos = end;
        Ok(s)
    }

    pub(super) fn i8(&mut self) -> Result<i8, String> {
        Ok(self.take(1)?[0] as i8)
    }

    pub(super) fn i16(&mut self) -> Result<i16, String> {
        Ok(i16::from_be_bytes(
            self.take(2)?.try_into().expect("2 bytes"),
        ))
    }

    pub(super) fn i32(&mut self) -> Result<i32, String> {
        Ok(i32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    pub(super) fn i64(&mut self) -> Result<i64, String> {
        Ok(i64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }

    pub(super) fn uuid(&mut self) -> Result<uuid::Uuid, String> {
        Ok(uuid::Uuid::from_bytes(
            self.take(16)?.try_into().expect("16 bytes"),
        ))
    }

    pub(super) fn varint(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for shift in (0..35).step_by(7) {
            let b = self.take(1)?[0];
            value |= u32::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".to_string())
    }

    /// A length; `None` for null. Compact when flexible, else int32 when `wide`, int16 when
    /// not. Never more than the bytes left.
    pub(super) fn len(&mut self, wide: bool) -> Result<Option<usize>, String> {
        let n = if self.flexible {
            i64::from(self.varint()?) - 1
        } else if wide {
            i64::from(self.i32()?)
        } else {
            i64::from(self.i16()?)
        };
        let Ok(n) = usize::try_from(n) else {
            return Ok(None);
        };
        if n > self.left() {
            return Err(format!("length {n} beyond the {}'s end", self.what));
        }
        Ok(Some(n))
    }

    /// An array's element count (null reads as empty). Each element takes at least a byte, so
    /// a count beyond the bytes left is refused before anything is allocated for it.
    pub(super) fn array_len(&mut self) -> Result<usize, String> {
        Ok(self.len(true)?.unwrap_or(0))
    }

    pub(super) fn nullable_string(&mut self) -> Result<Option<String>, String> {
        match self.len(false)? {
            None => Ok(None),
            Some(n) => utf8(self.take(n)?).map(Some),
        }
    }

    pub(super) fn string(&mut self) -> Result<String, String> {
        self.nullable_string()?
            .ok_or_else(|| "null string".to_string())
    }

    /// An int16-length string whatever the version: record keys (group and member ids come
    /// from int16-length request fields).
    pub(super) fn short_string(&mut self) -> Result<String, String> {
        let n = usize::try_from(self.i16()?).map_err(|_| "null key string")?;
        utf8(self.take(n)?)
    }

    pub(super) fn nullable_bytes(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.len(true)? {
            None => Ok(None),
            Some(n) => self.take(n).map(Some),
        }
    }

    /// Bytes; null reads as empty.
    pub(super) fn bytes(&mut self) -> Result<&'a [u8], String> {
        Ok(self.nullable_bytes()?.unwrap_or_default())
    }

    /// The tagged fields, (tag, bytes) each; none unless flexible.
    pub(super) fn tagged(&mut self) -> Result<Vec<(u32, &'a [u8])>, String> {
        let mut out = Vec::new();
        if !self.flexible {
            return Ok(out);
        }
        for _ in 0..self.varint()? {
            let tag = self.varint()?;
            let size = self.varint()? as usize;
            out.push((tag, self.take(size)?));
        }
        Ok(out)
    }

    /// Skips the tagged fields (none unless flexible).
    pub(super) fn tagged_fields(&mut self) -> Result<(), String> {
        if !self.flexible {
            return Ok(());
        }
        for _ in 0..self.varint()? {
            self.varint()?;
            let size = self.varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

fn utf8(bytes: &[u8]) -> Result<String, String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| "string is not UTF-8".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_beyond_the_bytes_left_are_refused_before_allocating() {
        // An int32 array count of 1,000,000 over three bytes.
        let mut r = Reader::new(&[0x00, 0x0f, 0x42, 0x40, 1, 2, 3], false);
        assert!(r.array_len().unwrap_err().contains("beyond"));
        // A compact string length of 100 over two bytes.
        let mut r = Reader::new(&[101, b'a', b'b'], true);
        assert!(r.string().unwrap_err().contains("beyond"));
    }

    #[test]
    fn null_reads_as_none_and_errors_name_the_bytes() {
        let mut r = Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff], false);
        assert_eq!(r.nullable_string(), Ok(None));
        assert_eq!(r.nullable_bytes(), Ok(None));
        let mut r = Reader::new(&[0x00], false).of("consumer protocol data");
        assert_eq!(
            r.i16().unwrap_err(),
            "consumer protocol data ends early at byte 0"
        );
    }

    #[test]
    fn tagged_fields_are_read_only_when_flexible() {
        let mut r = Reader::new(&[1, 5, 2, 0xaa, 0xbb], true);
        assert_eq!(r.tagged(), Ok(vec![(5, &[0xaa, 0xbb][..])]));
        let mut r = Reader::new(&[1, 5], false);
        assert_eq!(r.tagged(), Ok(vec![]));
        assert_eq!(r.i8(), Ok(1));
    }
}

//! A string column's dictionary decoded into one buffer, by ordinal.

use tantivy_sstable::{Dictionary, VoidSSTable};

/// The terms of a string column's dictionary, decoded in ordinal order: a user's id is one slice
/// of one buffer instead of a walk through a compressed dictionary block (exports resolve every
/// matching user's id, ~30% of their time before this).
#[derive(Default)]
pub struct DecodedTerms {
    text: String,
    /// Where each term ends in `text`.
    ends: Vec<u32>,
}

impl DecodedTerms {
    /// `None` when a term is not UTF-8 or the terms do not fit in 4 GB.
    pub fn decode(dictionary: &Dictionary<VoidSSTable>) -> std::io::Result<Option<Self>> {
        let mut terms = DecodedTerms {
            text: String::new(),
            ends: Vec::with_capacity(dictionary.num_terms()),
        };
        let mut stream = dictionary.stream()?;
        while stream.advance() {
            if !terms.push(stream.key()) {
                return Ok(None);
            }
        }
        Ok(Some(terms))
    }

    /// Appends a term; false (and nothing appended) when it is not UTF-8 or does not fit.
    pub fn push(&mut self, term: &[u8]) -> bool {
        let Ok(term) = std::str::from_utf8(term) else {
            return false;
        };
        let Ok(end) = u32::try_from(self.text.len() + term.len()) else {
            return false;
        };
        self.text.push_str(term);
        self.ends.push(end);
        true
    }

    /// The term of ordinal `ord`.
    #[inline]
    pub fn term(&self, ord: u64) -> &str {
        let ord = ord as usize;
        let start = if ord == 0 { 0 } else { self.ends[ord - 1] };
        &self.text[start as usize..self.ends[ord] as usize]
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn bytes(&self) -> usize {
        self.text.len() + self.ends.len() * 4
    }
}

#[cfg(test)]
mod tests {
    use tantivy::schema::{FAST, STRING, Schema};
    use tantivy::{Index, doc};

    use super::*;

    #[test]
    fn every_ordinal_reads_the_term_the_dictionary_holds() {
        let mut schema = Schema::builder();
        let id = schema.add_text_field("id", STRING | FAST);
        let index = Index::create_in_ram(schema.build());
        let mut writer = index.writer_with_num_threads(1, 15 << 20).unwrap();
        for n in 0..3000 {
            let id_value = format!("user_{:027}", n * 7919 % 3001);
            writer.add_document(doc!(id => id_value)).unwrap();
        }
        writer.commit().unwrap();
        let searcher = index.reader().unwrap().searcher();
        let ids = (searcher.segment_reader(0).fast_fields().str("id"))
            .unwrap()
            .unwrap();
        let decoded = DecodedTerms::decode(ids.dictionary()).unwrap().unwrap();
        assert_eq!(decoded.len(), ids.dictionary().num_terms());
        for ord in 0..decoded.len() as u64 {
            let mut want = Vec::new();
            assert!(ids.dictionary().ord_to_term(ord, &mut want).unwrap());
            assert_eq!(
                decoded.term(ord).as_bytes(),
                want.as_slice(),
                "ordinal {ord}"
            );
        }
        let mut not_utf8 = DecodedTerms::default();
        assert!(!not_utf8.push(&[0xff, 0xfe]), "not UTF-8 is refused");
        assert_eq!(not_utf8.len(), 0);
    }
}

//! The segment writer: documents pushed in strictly increasing id order plus opaque
//! extension sections, laid out canonically (see the parent module doc) so equal content
//! gives equal bytes.

use super::*;

/// Builds one segment file from documents pushed in strictly increasing id
/// order, plus opaque extension sections (indexes) built by callers.
#[derive(Debug)]
pub struct SegmentBuilder {
    id_type: IdType,
    vector_dim: Option<u32>,
    rows: usize,
    last_id: Option<DocId>,
    /// u64 / UUID ids: fixed-width; string ids: the concatenated bytes.
    ids: Vec<u8>,
    /// String ids only: offsets into `ids` (starts with 0).
    id_offsets: Vec<u64>,
    /// Offsets into `docs` (starts with 0).
    doc_offsets: Vec<u64>,
    docs: Writer,
    vectors: Vec<u8>,
    absent: Vec<u64>,
    any_absent: bool,
    extra: Vec<(u16, Vec<u8>)>,
    range_checksums: bool,
}

impl SegmentBuilder {
    /// An empty builder for ids of `id_type` and, if `vector_dim` is set,
    /// dense vectors of that dimension (1..=`MAX_VECTOR_DIM`).
    pub fn new(id_type: IdType, vector_dim: Option<u32>) -> Self {
        SegmentBuilder {
            id_type,
            vector_dim,
            rows: 0,
            last_id: None,
            ids: Vec::new(),
            id_offsets: if id_type == IdType::String { vec![0] } else { Vec::new() },
            doc_offsets: vec![0],
            docs: Writer::new(),
            vectors: Vec::new(),
            absent: Vec::new(),
            any_absent: false,
            extra: Vec::new(),
            range_checksums: false,
        }
    }

    /// Also write a range-checksum section (kind 22) after the other sections,
    /// so readers can verify ranged reads of the file.
    pub fn with_range_checksums(mut self) -> Self {
        self.range_checksums = true;
        self
    }

    fn checked_dim(&self) -> Result<Option<usize>, FormatError> {
        match self.vector_dim {
            None => Ok(None),
            Some(d) => match usize::try_from(d) {
                Ok(d) if (1..=MAX_VECTOR_DIM).contains(&d) => Ok(Some(d)),
                _ => Err(malformed(format_args!("vector dimension {d} is outside 1..={MAX_VECTOR_DIM}"))),
            },
        }
    }

    /// Append one document. Its id must be of the builder's kind and greater
    /// than every id pushed before; its vector, if any, must have the
    /// builder's dimension (a document without a vector is allowed and
    /// recorded in the vector-absent bitmap). On error nothing is appended.
    pub fn push(&mut self, doc: &Document) -> Result<(), FormatError> {
        if doc.id.id_type() != self.id_type {
            return Err(malformed(format_args!(
                "id {} is a {:?} id; this segment holds {:?} ids",
                doc.id,
                doc.id.id_type(),
                self.id_type
            )));
        }
        if let Some(last) = &self.last_id {
            if *last >= doc.id {
                return Err(malformed(format_args!("ids must strictly increase: {} after {last}", doc.id)));
            }
        }
        if self.rows >= MAX_SEGMENT_ROWS {
            return Err(FormatError::TooLarge {
                what: "segment rows",
                len: len_u64(self.rows).saturating_add(1),
                max: len_u64(MAX_SEGMENT_ROWS),
            });
        }
        let dim = self.checked_dim()?;
        match (&doc.vector, dim) {
            (Some(_), None) => {
                return Err(malformed(format_args!(
                    "document {} has a vector but the segment has none",
                    doc.id
                )))
            }
            (Some(v), Some(d)) if v.len() != d => {
                return Err(malformed(format_args!(
                    "document {} has a {}-dimensional vector; the segment's are {d}-dimensional",
                    doc.id,
                    v.len()
                )))
            }
            _ => {}
        }
        if let DocId::Str(s) = &doc.id {
            if s.is_empty() || s.len() > MAX_STRING_ID_BYTES {
                return Err(malformed(format_args!(
                    "string id of {} bytes is outside 1..={MAX_STRING_ID_BYTES}",
                    s.len()
                )));
            }
        }
        let mut attrs = Writer::new();
        encode_attrs(&mut attrs, &doc.attrs)?;

        // Validated: append everything.
        match &doc.id {
            DocId::U64(n) => self.ids.extend_from_slice(&n.to_le_bytes()),
            DocId::Uuid(u) => self.ids.extend_from_slice(u.as_bytes()),
            DocId::Str(s) => {
                self.ids.extend_from_slice(s.as_bytes());
                self.id_offsets.push(len_u64(self.ids.len()));
            }
        }
        self.docs.bytes(attrs.as_slice());
        self.doc_offsets.push(len_u64(self.docs.len()));
        if let Some(d) = dim {
            let row = self.rows;
            if row.is_multiple_of(64) {
                self.absent.push(0);
            }
            match &doc.vector {
                Some(v) => v.iter().for_each(|x| self.vectors.extend_from_slice(&x.to_le_bytes())),
                None => {
                    self.vectors.resize(self.vectors.len() + d * 4, 0);
                    if let Some(w) = self.absent.last_mut() {
                        *w |= 1u64 << (row % 64);
                    }
                    self.any_absent = true;
                }
            }
        }
        self.rows += 1;
        self.last_id = Some(doc.id.clone());
        Ok(())
    }

    /// Add an extension section (an index built by the caller). `kind` must
    /// be at least [`FIRST_EXTENSION_KIND`]; [`SegmentBuilder::finish`]
    /// refuses core kinds. Sections are written in the order added; several
    /// sections of one kind are allowed (e.g. one text index per attribute).
    pub fn add_section(&mut self, kind: u16, bytes: Vec<u8>) {
        self.extra.push((kind, bytes));
    }

    /// Rows pushed so far.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was pushed.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// The id kind of this segment.
    pub fn id_type(&self) -> IdType {
        self.id_type
    }

    /// Assemble the segment file.
    pub fn finish(self) -> Result<Vec<u8>, FormatError> {
        let dim = self.checked_dim()?;
        if let Some((kind, _)) = self.extra.iter().find(|(k, _)| *k < FIRST_EXTENSION_KIND) {
            return Err(malformed(format_args!(
                "section kind {kind} is a core kind; extension sections use kinds >= {FIRST_EXTENSION_KIND}"
            )));
        }
        let mut ids = Writer::with_capacity(self.ids.len() + self.id_offsets.len() * 8);
        for o in &self.id_offsets {
            ids.u64(*o);
        }
        ids.bytes(&self.ids);
        let mut docs = Writer::with_capacity(self.docs.len() + self.doc_offsets.len() * 8);
        for o in &self.doc_offsets {
            docs.u64(*o);
        }
        docs.bytes(self.docs.as_slice());
        let ids = ids.into_inner();
        let docs = docs.into_inner();
        let mut sections: Vec<(u16, &[u8])> = vec![(SECTION_IDS, &ids), (SECTION_DOCS, &docs)];
        let mut absent = Writer::new();
        if dim.is_some() {
            sections.push((SECTION_VECTORS, &self.vectors));
            if self.any_absent {
                for w in &self.absent {
                    absent.u64(*w);
                }
                sections.push((SECTION_VECTOR_ABSENT, absent.as_slice()));
            }
        }
        sections.extend(self.extra.iter().map(|(k, b)| (*k, b.as_slice())));
        let dim = self.vector_dim.unwrap_or(0);
        assemble(id_kind_of(self.id_type), self.rows, dim, &sections, self.range_checksums)
    }
}

/// Lay out header, sections, table and table crc (see the module doc).
pub(super) fn assemble(
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[(u16, &[u8])],
    range_checksums: bool,
) -> Result<Vec<u8>, FormatError> {
    if range_checksums {
        return assemble_with_range_checksums(id_kind, rows, dim, sections);
    }
    if sections.len() > MAX_SECTIONS {
        return Err(FormatError::TooLarge {
            what: "segment sections",
            len: len_u64(sections.len()),
            max: len_u64(MAX_SECTIONS),
        });
    }
    let too_large = || FormatError::TooLarge { what: "segment", len: u64::MAX, max: len_u64(usize::MAX) };
    let mut total = SEGMENT_HEADER_LEN;
    for (_, b) in sections {
        total = align_up(total).and_then(|t| t.checked_add(b.len())).ok_or_else(too_large)?;
    }
    let table_offset = align_up(total).ok_or_else(too_large)?;
    let total = sections
        .len()
        .checked_mul(SECTION_ENTRY_LEN)
        .and_then(|t| t.checked_add(table_offset))
        .and_then(|t| t.checked_add(4))
        .ok_or_else(too_large)?;

    let mut w = Writer::with_capacity(total);
    w.bytes(&SEGMENT_MAGIC);
    w.u16(SEGMENT_FORMAT_VERSION);
    w.u16(0); // flags
    w.u8(id_kind);
    w.bytes(&[0; 3]);
    w.u64(len_u64(rows));
    w.u32(dim);
    w.u32(u32::try_from(sections.len()).unwrap_or(u32::MAX));
    w.u64(len_u64(table_offset));
    w.bytes(&[0; OFF_HEADER_CRC - 40]);
    let crc = crc32c::crc32c(w.as_slice());
    w.u32(crc);

    let mut table = Writer::with_capacity(sections.len() * SECTION_ENTRY_LEN);
    for (kind, b) in sections {
        let at = align_up(w.len()).ok_or_else(too_large)?;
        w.bytes(&vec![0; at - w.len()]);
        table.u16(*kind);
        table.u16(0); // flags
        table.u32(crc32c::crc32c(b));
        table.u64(len_u64(at));
        table.u64(len_u64(b.len()));
        w.bytes(b);
    }
    w.bytes(&vec![0; table_offset - w.len()]);
    w.bytes(table.as_slice());
    w.u32(crc32c::crc32c(table.as_slice()));
    Ok(w.into_inner())
}

/// Lay the file out with a zeroed range-checksum section of the right length
/// (so the header and table already count it), then checksum every byte
/// before that section and patch in the section, its table crc and the table
/// crc. The result is what a two-pass layout would give, in one pass.
pub(super) fn assemble_with_range_checksums(
    id_kind: u8,
    rows: usize,
    dim: u32,
    sections: &[(u16, &[u8])],
) -> Result<Vec<u8>, FormatError> {
    let too_large = || FormatError::TooLarge { what: "segment", len: u64::MAX, max: len_u64(usize::MAX) };
    let mut end = SEGMENT_HEADER_LEN;
    for (_, b) in sections {
        end = align_up(end).and_then(|t| t.checked_add(b.len())).ok_or_else(too_large)?;
    }
    let covered = align_up(end).ok_or_else(too_large)?;
    let placeholder = vec![0u8; RANGE_HEADER_LEN + 4 * covered.div_ceil(1 << RANGE_CHUNK_LOG2)];
    let mut all = sections.to_vec();
    all.push((SECTION_RANGE_CHECKSUMS, &placeholder));
    let mut file = assemble(id_kind, rows, dim, &all, false)?;
    let sums = RangeChecksums::compute(&file[..covered], RANGE_CHUNK_LOG2).encode();
    file[covered..covered + sums.len()].copy_from_slice(&sums);
    let table_at = file.len() - 4 - SECTION_ENTRY_LEN * all.len();
    let entry = table_at + SECTION_ENTRY_LEN * (all.len() - 1);
    file[entry + 4..entry + 8].copy_from_slice(&crc32c::crc32c(&sums).to_le_bytes());
    let table_crc = crc32c::crc32c(&file[table_at..file.len() - 4]);
    let n = file.len();
    file[n - 4..].copy_from_slice(&table_crc.to_le_bytes());
    Ok(file)
}

//! A deterministic generated corpus for benches.

use crate::ScratchDir;
use std::io::Write;

pub const WORDS: &[&str] = &[
    "the", "harbour", "keeper", "light", "ship", "tide", "fog", "signal", "lens", "lamp", "stairs",
    "channel", "pilot", "rock", "coast", "storm", "wind", "sail", "anchor", "mooring", "chart",
    "depth", "north", "south", "bell", "horn", "night", "evening", "beam", "mile", "sea", "water",
    "boat", "crew", "log", "entry", "weather", "season", "spring", "winter", "of", "and", "to",
    "in", "a", "is", "was", "for", "on", "with", "by", "at", "from", "every", "each",
];

/// A deterministic pseudo-random sequence (xorshift64*), so every run ingests the same corpus.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// Writes `docs` documents of about `total_bytes` in all into `dir`: a third
/// markdown with sections, the rest plain text; paragraphs of 4–9 sentences.
pub fn generate(dir: &ScratchDir, total_bytes: usize, docs: usize) {
    let mut rng = Rng(0x5eed_d0c5);
    let per_doc = total_bytes / docs;
    for doc in 0..docs {
        let markdown = doc % 3 == 0;
        dir.write(
            &format!("doc-{doc:04}.{}", if markdown { "md" } else { "txt" }),
            document(&mut rng, per_doc, markdown, doc),
        );
    }
}

/// About `bytes` of generated paragraphs (under `##` sections if `markdown`).
pub fn document(rng: &mut Rng, bytes: usize, markdown: bool, doc: usize) -> String {
    let mut text = String::with_capacity(bytes + 200);
    let mut section = 0;
    while text.len() < bytes {
        if markdown && text.len() >= section * 4000 {
            section += 1;
            text.push_str(&format!("\n## Section {section} of document {doc}\n\n"));
        }
        for _ in 0..(4 + rng.below(6)) {
            let words = 6 + rng.below(14);
            for w in 0..words {
                let word = WORDS[rng.below(WORDS.len())];
                text.push_str(word);
                text.push(if w + 1 == words { '.' } else { ' ' });
            }
            text.push(' ');
        }
        text.push_str("\n\n");
    }
    text
}

/// A PDF of `pages` pages of generated text.
pub fn pdf(rng: &mut Rng, pages: usize) -> Vec<u8> {
    let pages: Vec<Vec<String>> = (0..pages)
        .map(|_| {
            (0..60)
                .map(|_| {
                    let line: Vec<&str> = (0..12).map(|_| WORDS[rng.below(WORDS.len())]).collect();
                    line.join(" ")
                })
                .collect()
        })
        .collect();
    pdf_of_pages(&pages)
}

/// A PDF whose pages show these lines (Helvetica, one text layer, no
/// compression), written by hand: objects, then the cross-reference table.
pub fn pdf_of_pages(pages: &[Vec<String>]) -> Vec<u8> {
    let mut objects: Vec<String> = vec![
        "<< /Type /Catalog /Pages 2 0 R >>".into(),
        String::new(), // the page tree, once the pages are known
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>".into(),
    ];
    let mut kids = Vec::new();
    for lines in pages {
        let mut content = String::from("BT /F1 10 Tf 12 TL 56 780 Td\n");
        for line in lines {
            content.push_str(&format!("({line}) Tj T*\n"));
        }
        content.push_str("ET");
        objects.push(format!(
            "<< /Length {} >>\nstream\n{content}\nendstream",
            content.len()
        ));
        let contents = objects.len();
        objects.push(format!(
            "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
             /Resources << /Font << /F1 3 0 R >> >> /Contents {contents} 0 R >>"
        ));
        kids.push(format!("{} 0 R", objects.len()));
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {} >>",
        kids.join(" "),
        pages.len()
    );
    pdf_file(objects.iter().map(|object| object.as_bytes()))
}

/// A PDF file of `objects` (numbered from 1; the first is the catalog):
/// each object, then the cross-reference table and the trailer.
fn pdf_file<'a>(objects: impl ExactSizeIterator<Item = &'a [u8]>) -> Vec<u8> {
    let count = objects.len();
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (n, object) in objects.enumerate() {
        offsets.push(out.len());
        out.extend(format!("{} 0 obj\n", n + 1).bytes());
        out.extend_from_slice(object);
        out.extend(b"\nendobj\n");
    }
    let xref = out.len();
    out.extend(format!("xref\n0 {}\n0000000000 65535 f \n", count + 1).bytes());
    for offset in offsets {
        out.extend(format!("{offset:010} 00000 n \n").bytes());
    }
    out.extend(
        format!(
            "trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n",
            count + 1
        )
        .bytes(),
    );
    out
}

/// A PDF of `pages` pages that all show one FlateDecode stream of about
/// `content_len` bytes of text operators drawing `text`: a compression bomb
/// (one page, a huge stream) or page amplification (many pages).
pub fn flate_pdf(content_len: usize, pages: usize, text: &str) -> Vec<u8> {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    let line = format!("BT /F1 10 Tf 56 780 Td ({text}) Tj ET\n");
    let block = line.repeat(4096 / line.len() + 1);
    let mut written = 0;
    while written < content_len {
        encoder.write_all(block.as_bytes()).unwrap();
        written += block.len();
    }
    let stream = encoder.finish().unwrap();
    let mut objects: Vec<Vec<u8>> = vec![
        b"<< /Type /Catalog /Pages 2 0 R >>".to_vec(),
        Vec::new(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
            .to_vec(),
    ];
    let mut content = format!(
        "<< /Length {} /Filter /FlateDecode >>\nstream\n",
        stream.len()
    )
    .into_bytes();
    content.extend_from_slice(&stream);
    content.extend_from_slice(b"\nendstream");
    objects.push(content);
    // Every page shows the one stream (object 4).
    let kids: Vec<String> = (0..pages).map(|i| format!("{} 0 R", 5 + i)).collect();
    for _ in 0..pages {
        objects.push(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] \
              /Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
                .to_vec(),
        );
    }
    objects[1] = format!(
        "<< /Type /Pages /Kids [{}] /Count {pages} >>",
        kids.join(" ")
    )
    .into_bytes();
    pdf_file(objects.iter().map(Vec::as_slice))
}

/// HTML with `depth` `tag` elements nested in one another around a word.
pub fn deep_html(tag: &str, depth: usize) -> String {
    format!(
        "<html><body>{}deep inside{}</body></html>",
        format!("<{tag}>").repeat(depth),
        format!("</{tag}>").repeat(depth)
    )
}

/// HTML with one table row of `cells` cells.
pub fn wide_table(cells: usize) -> String {
    let cells: String = (0..cells).map(|i| format!("<td>c{i}</td>")).collect();
    format!("<html><body><table><tr>{cells}</tr></table></body></html>")
}

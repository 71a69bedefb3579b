//! A deterministic generated corpus for benches.

use crate::ScratchDir;

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
        let mut text = String::with_capacity(per_doc + 200);
        let mut section = 0;
        while text.len() < per_doc {
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
        dir.write(
            &format!("doc-{doc:04}.{}", if markdown { "md" } else { "txt" }),
            text,
        );
    }
}

//! PDF: the text layer, page by page (lopdf and pdf-extract).

use super::OutputBounds;
use super::layout::{Layout, TextBuilder};
use docpipe_core::error::Rejection;

/// Text of each page, up to the first page that cannot be read, within the
/// bounds (checked page by page, so a file whose pages repeat one huge
/// stream stops early). NULs (font-encoding artefacts of the extractor, not
/// text) are dropped. The PDF crate can panic on malformed files; that is
/// the file's fault, so it becomes a rejection.
pub(super) fn parse(bytes: &[u8], bounds: &OutputBounds) -> Result<(String, Layout), Rejection> {
    let unreadable = |detail: String| Rejection::UnreadablePdf { detail };
    let extract = || {
        let mut document =
            lopdf::Document::load_mem(bytes).map_err(|e| unreadable(e.to_string()))?;
        if document.is_encrypted() {
            document
                .decrypt("")
                .map_err(|e| unreadable(e.to_string()))?;
        }
        let numbers: Vec<u32> = document.get_pages().into_keys().collect();
        bounds.check_pages(numbers.len())?;
        let mut pages = TextBuilder::new(bounds.max_chars);
        for (page, number) in (1..).zip(numbers) {
            let mut text = String::new();
            let mut output = pdf_extract::PlainTextOutput::new(&mut text);
            if pdf_extract::output_doc_page(&document, &mut output, number).is_err() {
                break;
            }
            text.retain(|c| c != '\0');
            pages.page(page);
            pages.paragraph(&text)?;
        }
        Ok(pages.finish())
    };
    std::panic::catch_unwind(extract).unwrap_or_else(|_| {
        Err(Rejection::UnreadablePdf {
            detail: "the file is malformed".into(),
        })
    })
}

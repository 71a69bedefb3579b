//! Word documents (`.docx`, Office Open XML): paragraphs, headings with
//! their levels (from the paragraph's style or outline level), list items,
//! tables a row to a line with ` | ` between cells, then each distinct
//! header and footer once, then the footnotes. Deleted text, field codes
//! and macros (`vbaProject.bin`, never opened) are left out.

use super::OutputBounds;
use super::archive::Archive;
use super::layout::{Layout, TextBuilder};
use super::xml::{Node, attribute, local, walk};
use docpipe_core::error::Rejection;
use std::collections::{HashMap, HashSet};

const FORMAT: &str = "docx";

pub fn parse(bytes: &[u8], bounds: &OutputBounds) -> Result<(String, Layout), Rejection> {
    let mut archive = Archive::open(bytes, FORMAT, bounds)?;
    let styles = match archive.read_text("word/styles.xml")? {
        Some(xml) => heading_styles(&xml)?,
        None => HashMap::new(),
    };
    let mut doc = TextBuilder::new(bounds.max_chars);
    let body = archive.require("word/document.xml")?;
    write_part(&body, &styles, &mut doc)?;
    let mut names = archive.names();
    names.sort();
    let mut seen = HashSet::new();
    for name in names.iter().filter(|n| is_header_or_footer(n)) {
        let Some(xml) = archive.read_text(name)? else {
            continue;
        };
        // Each section may repeat the same header: keep one of each.
        let mut part = TextBuilder::new(bounds.max_chars);
        write_part(&xml, &styles, &mut part)?;
        let (text, _) = part.finish();
        if !text.is_empty() && !seen.contains(&text) {
            doc.paragraph(&text)?;
            seen.insert(text);
        }
    }
    if let Some(xml) = archive.read_text("word/footnotes.xml")? {
        write_part(&xml, &styles, &mut doc)?;
    }
    Ok(doc.finish())
}

fn is_header_or_footer(name: &str) -> bool {
    let Some(file) = name.strip_prefix("word/") else {
        return false;
    };
    (file.starts_with("header") || file.starts_with("footer"))
        && file.ends_with(".xml")
        && !file.contains('/')
}

/// Heading level of each paragraph style that is a heading: named
/// `heading N` (Word's built-in headings, whatever the language of their
/// id) or `Title`, or with an outline level.
fn heading_styles(xml: &str) -> Result<HashMap<String, u8>, Rejection> {
    let mut levels = HashMap::new();
    let mut style: Option<String> = None;
    walk(xml, FORMAT, |node| {
        if let Node::Start(element) = node {
            match local(element).as_str() {
                "style" => style = attribute(element, "styleId"),
                "name" => {
                    let name = attribute(element, "val").unwrap_or_default().to_lowercase();
                    let level = match name.strip_prefix("heading ") {
                        Some(n) => n.trim().parse::<u8>().ok(),
                        None => (name == "title").then_some(1),
                    };
                    if let (Some(id), Some(level)) = (&style, level) {
                        levels.insert(id.clone(), level.clamp(1, 9));
                    }
                }
                "outlineLvl" => {
                    let level = attribute(element, "val").and_then(|v| v.parse::<u8>().ok());
                    if let (Some(id), Some(level)) = (&style, level.filter(|l| *l < 9)) {
                        levels.entry(id.clone()).or_insert(level + 1);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(levels)
}

/// A paragraph as it is read.
#[derive(Default)]
struct Paragraph {
    text: String,
    level: Option<u8>,
    list_item: bool,
}

/// Writes the paragraphs and tables of one part (the body, a header, the
/// footnotes).
fn write_part(
    xml: &str,
    styles: &HashMap<String, u8>,
    doc: &mut TextBuilder,
) -> Result<(), Rejection> {
    let mut paragraph = Paragraph::default();
    // Text is kept only inside <w:t>, and not inside deleted runs.
    let (mut in_text, mut deleted) = (false, 0usize);
    // Open tables: each has its rows, the row under way, the cell under way.
    let mut tables: Vec<(Vec<String>, Vec<String>, String)> = Vec::new();
    walk(xml, FORMAT, |node| {
        match node {
            Node::Start(element) => match local(element).as_str() {
                "p" => paragraph = Paragraph::default(),
                "pStyle" => {
                    let style = attribute(element, "val").unwrap_or_default();
                    paragraph.level = paragraph.level.or(styles.get(&style).copied());
                }
                "outlineLvl" => {
                    let level = attribute(element, "val").and_then(|v| v.parse::<u8>().ok());
                    paragraph.level = level.filter(|l| *l < 9).map(|l| l + 1);
                }
                "numPr" => paragraph.list_item = true,
                "t" => in_text = true,
                "del" => deleted += 1,
                "tab" if deleted == 0 => paragraph.text.push('\t'),
                "br" | "cr" if deleted == 0 => paragraph.text.push('\n'),
                "tbl" => tables.push(Default::default()),
                _ => {}
            },
            Node::Text(text) if in_text && deleted == 0 => paragraph.text.push_str(text),
            Node::Text(_) => {}
            Node::End(name) => match name {
                "t" => in_text = false,
                "del" => deleted = deleted.saturating_sub(1),
                "p" => {
                    let paragraph = std::mem::take(&mut paragraph);
                    let text = paragraph.text.trim();
                    if let Some((_, _, cell)) = tables.last_mut() {
                        if !text.is_empty() {
                            if !cell.is_empty() {
                                cell.push(' ');
                            }
                            cell.push_str(text);
                        }
                    } else if let Some(level) = paragraph.level {
                        doc.heading(level, text)?;
                    } else if paragraph.list_item && !text.is_empty() {
                        doc.paragraph(&format!("- {text}"))?;
                    } else {
                        doc.paragraph(text)?;
                    }
                }
                "tc" => {
                    if let Some((_, row, cell)) = tables.last_mut() {
                        row.push(std::mem::take(cell).replace('\n', " "));
                    }
                }
                "tr" => {
                    if let Some((rows, row, _)) = tables.last_mut() {
                        let line = std::mem::take(row).join(" | ");
                        if !line.replace('|', "").trim().is_empty() {
                            rows.push(line);
                        }
                    }
                }
                "tbl" => {
                    if let Some((rows, _, _)) = tables.pop() {
                        let table = rows.join("\n");
                        match tables.last_mut() {
                            // A table in a cell is text of that cell.
                            Some((_, _, cell)) => cell.push_str(&table.replace('\n', "; ")),
                            None => doc.paragraph(&table)?,
                        }
                    }
                }
                _ => {}
            },
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parsing::archive::tests::zip_of;
    use docpipe_core::domain::format::Format;
    use docpipe_core::settings::ParseLimits;

    /// A "billion laughs" DTD: quick-xml never expands a document's own
    /// entities, so the reference costs nothing and gives no text.
    #[test]
    fn an_entity_bomb_expands_to_nothing() {
        let mut dtd = String::from(r#"<!DOCTYPE w:document [<!ENTITY lol0 "lol">"#);
        for n in 1..10 {
            let previous = format!("&lol{};", n - 1).repeat(10);
            dtd.push_str(&format!(r#"<!ENTITY lol{n} "{previous}">"#));
        }
        dtd.push(']');
        dtd.push('>');
        let xml = format!(
            r#"<?xml version="1.0"?>{dtd}<w:document xmlns:w="w"><w:body><w:p><w:r><w:t>Real text &amp; more</w:t></w:r></w:p><w:p><w:r><w:t>&lol9;</w:t></w:r></w:p></w:body></w:document>"#
        );
        let docx = zip_of(&[("word/document.xml", xml.as_bytes())]);
        let bounds = ParseLimits::default().bounds(Format::Docx, docx.len());
        let (text, _) = parse(&docx, &bounds).unwrap();
        assert_eq!(text, "Real text & more");
    }
}

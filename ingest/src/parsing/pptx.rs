//! Presentations (`.pptx`): each slide in the presentation's order as a
//! page, its title as a heading, then its text frames, its tables a row to a
//! line, and its speaker notes.

use super::archive::Archive;
use super::layout::{Layout, TextBuilder};
use super::xml::{Node, attribute, local, walk};
use super::{OutputBounds, unreadable};
use docpipe_core::error::Rejection;
use std::collections::HashMap;

const FORMAT: &str = "pptx";

pub fn parse(bytes: &[u8], bounds: &OutputBounds) -> Result<(String, Layout), Rejection> {
    let mut archive = Archive::open(bytes, FORMAT, bounds)?;
    let presentation = archive.require("ppt/presentation.xml")?;
    let relations = relations(&archive.require("ppt/_rels/presentation.xml.rels")?)?;
    let mut order = Vec::new();
    walk(&presentation, FORMAT, |node| {
        if let Node::Start(element) = node
            && local(element) == "sldId"
        {
            // r:id, the relationship to the slide (the plain id is a number).
            let relation = attribute(element, "r:id");
            order.extend(relation);
        }
        Ok(())
    })?;
    bounds.check_pages(order.len())?;
    let mut doc = TextBuilder::new(bounds.max_chars);
    for (number, rel) in (1..).zip(&order) {
        let target = relations
            .get(rel)
            .ok_or_else(|| unreadable(FORMAT, format!("slide relationship {rel} is missing")))?;
        let path = format!(
            "ppt/{}",
            target.trim_start_matches("../").trim_start_matches('/')
        );
        let Some(slide) = archive.read_text(&path)? else {
            continue;
        };
        doc.page(number);
        write_slide(&slide, &mut doc, true)?;
        if let Some(notes) = notes_of(&mut archive, &path)? {
            write_slide(&notes, &mut doc, false)?;
        }
    }
    Ok(doc.finish())
}

/// The relationships of a part: id → target.
fn relations(xml: &str) -> Result<HashMap<String, String>, Rejection> {
    let mut targets = HashMap::new();
    walk(xml, FORMAT, |node| {
        if let Node::Start(element) = node
            && local(element) == "Relationship"
            && let (Some(id), Some(target)) =
                (attribute(element, "Id"), attribute(element, "Target"))
        {
            targets.insert(id, target);
        }
        Ok(())
    })?;
    Ok(targets)
}

/// The notes page of the slide at `path`, if it has one.
fn notes_of(archive: &mut Archive, path: &str) -> Result<Option<String>, Rejection> {
    let (folder, file) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(rels) = archive.read_text(&format!("{folder}/_rels/{file}.rels"))? else {
        return Ok(None);
    };
    let notes = relations(&rels)?
        .into_values()
        .find(|target| target.contains("notesSlide"));
    match notes {
        Some(target) => {
            let name = target.rsplit('/').next().unwrap_or(&target);
            archive.read_text(&format!("ppt/notesSlides/{name}"))
        }
        None => Ok(None),
    }
}

/// Writes a slide's (or notes page's) shapes: a title placeholder as a
/// heading (on slides), each text paragraph, each table's rows.
fn write_slide(xml: &str, doc: &mut TextBuilder, titles: bool) -> Result<(), Rejection> {
    let (mut in_title, mut in_text) = (false, false);
    let mut paragraph = String::new();
    let mut title = String::new();
    let mut body: Vec<String> = Vec::new();
    // The table under way: its rows, the row, the cell.
    let mut table: Option<(Vec<String>, Vec<String>, String)> = None;
    // Notes pages repeat the slide's image and number: only their body text is kept.
    let mut placeholder_kept = true;
    walk(xml, FORMAT, |node| {
        match node {
            Node::Start(element) => match local(element).as_str() {
                "sp" => (in_title, placeholder_kept) = (false, true),
                "ph" => {
                    let kind = attribute(element, "type").unwrap_or_default();
                    in_title = titles && matches!(kind.as_str(), "title" | "ctrTitle");
                    placeholder_kept = titles || kind == "body" || kind.is_empty();
                }
                "t" => in_text = true,
                "tbl" => table = Some(Default::default()),
                "br" => paragraph.push('\n'),
                _ => {}
            },
            Node::Text(text) if in_text => paragraph.push_str(text),
            Node::Text(_) => {}
            Node::End(name) => match name {
                "t" => in_text = false,
                "p" => {
                    let text = std::mem::take(&mut paragraph);
                    let text = text.trim();
                    if let Some((_, _, cell)) = table.as_mut() {
                        if !cell.is_empty() {
                            cell.push(' ');
                        }
                        cell.push_str(text);
                    } else if in_title {
                        if !title.is_empty() {
                            title.push(' ');
                        }
                        title.push_str(text);
                    } else if placeholder_kept && !text.is_empty() {
                        body.push(text.to_string());
                    }
                }
                "tc" => {
                    if let Some((_, row, cell)) = table.as_mut() {
                        row.push(std::mem::take(cell));
                    }
                }
                "tr" => {
                    if let Some((rows, row, _)) = table.as_mut() {
                        rows.push(std::mem::take(row).join(" | "));
                    }
                }
                "tbl" => {
                    if let Some((rows, _, _)) = table.take() {
                        body.push(rows.join("\n"));
                    }
                }
                _ => {}
            },
        }
        Ok(())
    })?;
    doc.heading(1, &title)?;
    for paragraph in body {
        doc.paragraph(&paragraph)?;
    }
    Ok(())
}

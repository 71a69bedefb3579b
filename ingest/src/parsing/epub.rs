//! EPUB books: the chapters in the spine's reading order, each read as HTML
//! (headings marked, scripts and styles dropped, nesting bounded). A book
//! whose chapters are encrypted (DRM) is `encrypted_document`; fonts
//! obfuscated by the EPUB rules are not chapters and do not count.

use super::archive::Archive;
use super::layout::{Layout, TextBuilder};
use super::xml::{Node, attribute, local, walk};
use super::{OutputBounds, html, unreadable};
use docpipe_core::error::Rejection;
use percent_encoding::percent_decode_str;
use std::collections::HashMap;

const FORMAT: &str = "epub";

pub fn parse(bytes: &[u8], bounds: &OutputBounds) -> Result<(String, Layout), Rejection> {
    let mut archive = Archive::open(bytes, FORMAT, bounds)?;
    let container = archive.require("META-INF/container.xml")?;
    let mut package = None;
    walk(&container, FORMAT, |node| {
        if let Node::Start(element) = node
            && local(element) == "rootfile"
        {
            package = package.take().or(attribute(element, "full-path"));
        }
        Ok(())
    })?;
    let package = package.ok_or_else(|| unreadable(FORMAT, "no package document"))?;
    let folder = package.rsplit_once('/').map_or("", |(folder, _)| folder);
    let chapters = spine(&archive.require(&package)?, folder)?;
    let encrypted = match archive.read_text("META-INF/encryption.xml")? {
        Some(xml) => encrypted_files(&xml)?,
        None => Vec::new(),
    };
    let mut doc = TextBuilder::new(bounds.max_chars);
    for chapter in &chapters {
        if encrypted.contains(chapter) {
            return Err(Rejection::EncryptedDocument);
        }
        if let Some(html) = archive.read_text(chapter)? {
            doc.rendered_markdown(&html::to_text(&html, bounds)?)?;
        }
    }
    Ok(doc.finish())
}

/// The archive paths of the spine's documents, in reading order.
fn spine(opf: &str, folder: &str) -> Result<Vec<String>, Rejection> {
    let mut manifest = HashMap::new();
    let mut order = Vec::new();
    walk(opf, FORMAT, |node| {
        if let Node::Start(element) = node {
            match local(element).as_str() {
                "item" => {
                    if let (Some(id), Some(href)) =
                        (attribute(element, "id"), attribute(element, "href"))
                    {
                        manifest.insert(id, href);
                    }
                }
                "itemref" => order.extend(attribute(element, "idref")),
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(order
        .iter()
        .filter_map(|id| manifest.get(id))
        .map(|href| resolve(folder, href))
        .collect())
}

/// `href` (relative to the package's folder, percent-encoded, perhaps with
/// a fragment) as a path in the archive.
fn resolve(folder: &str, href: &str) -> String {
    let href = href.split('#').next().unwrap_or(href);
    let href = percent_decode_str(href).decode_utf8_lossy();
    let mut parts: Vec<&str> = folder.split('/').filter(|p| !p.is_empty()).collect();
    for part in href.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    parts.join("/")
}

/// The files `encryption.xml` names as encrypted, other than fonts
/// obfuscated by the EPUB rules (which any reader undoes).
fn encrypted_files(xml: &str) -> Result<Vec<String>, Rejection> {
    const FONT_OBFUSCATION: [&str; 2] = [
        "http://www.idpf.org/2008/embedding",
        "http://ns.adobe.com/pdf/enc#RC",
    ];
    let mut files = Vec::new();
    let mut algorithm = String::new();
    walk(xml, FORMAT, |node| {
        if let Node::Start(element) = node {
            match local(element).as_str() {
                "EncryptionMethod" => {
                    algorithm = attribute(element, "Algorithm").unwrap_or_default()
                }
                "CipherReference" if !FONT_OBFUSCATION.contains(&algorithm.as_str()) => {
                    files.extend(attribute(element, "URI").map(|uri| resolve("", &uri)));
                }
                _ => {}
            }
        }
        Ok(())
    })?;
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hrefs_resolve_against_the_package_folder() {
        assert_eq!(
            resolve("OEBPS", "text/ch%201.xhtml#top"),
            "OEBPS/text/ch 1.xhtml"
        );
        assert_eq!(resolve("OEBPS/text", "../ch2.xhtml"), "OEBPS/ch2.xhtml");
        assert_eq!(resolve("", "../../ch3.xhtml"), "ch3.xhtml");
    }
}

//! A forward walk over an XML part (of an Office file or an EPUB): elements
//! by local name, text with references resolved. quick-xml reads without
//! recursion and never expands DTD entities, so neither a deep nesting nor
//! an entity bomb costs more than the part's length.

use super::unreadable;
use docpipe_core::error::Rejection;
use quick_xml::escape::resolve_predefined_entity;
use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

/// What the walk meets, in document order; an empty element is met as a
/// start and an end.
pub enum Node<'a, 'i> {
    Start(&'a BytesStart<'i>),
    End(&'a str),
    Text(&'a str),
}

/// The local name of an element (`w:p` → `p`).
pub fn local(element: &BytesStart) -> String {
    element.local_name().as_ref().to_string()
}

/// The value of the attribute named `name`: its local name, or its whole
/// name if `name` has a prefix (`r:id`).
pub fn attribute(element: &BytesStart, name: &str) -> Option<String> {
    element
        .attributes()
        .flatten()
        .find(|a| match name.contains(':') {
            true => a.key.as_ref() == name,
            false => a.key.local_name().as_ref() == name,
        })
        .and_then(|a| a.normalized_value(XmlVersion::Implicit1_0).ok())
        .map(|v| v.into_owned())
}

/// Walks `xml`, a part of a `format` file, calling `visit` for each node.
pub fn walk(
    xml: &str,
    format: &str,
    mut visit: impl FnMut(Node) -> Result<(), Rejection>,
) -> Result<(), Rejection> {
    let mut reader = Reader::from_str(xml);
    reader.config_mut().expand_empty_elements = true;
    loop {
        let event = reader.read_event().map_err(|e| unreadable(format, e))?;
        match &event {
            Event::Start(element) => visit(Node::Start(element))?,
            Event::End(end) => visit(Node::End(end.local_name().as_ref()))?,
            Event::Text(text) => visit(Node::Text(&text.xml10_content()))?,
            Event::CData(text) => visit(Node::Text(&text.xml10_content()))?,
            Event::GeneralRef(reference) => {
                let resolved = match reference.resolve_char_ref() {
                    Ok(Some(c)) => Some(c.to_string()),
                    _ => resolve_predefined_entity(reference).map(str::to_string),
                };
                if let Some(text) = resolved {
                    visit(Node::Text(&text))?;
                }
            }
            Event::Eof => return Ok(()),
            _ => {}
        }
    }
}

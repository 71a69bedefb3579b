//! HTML: rendered to markdown-like text by html2text, its nesting bounded
//! before the parse and again before the render.

use super::OutputBounds;
use docpipe_core::error::Rejection;

/// Width for HTML rendering: a page's width. Tables are rendered a cell to a
/// row ("raw" mode), so no cell is padded out to the width of its column.
const HTML_LINE_WIDTH: usize = 200;

/// The text of an HTML document, its nesting checked before it is parsed
/// (the parser's time grows with the square of the depth) and again before
/// it is rendered (so do the rendering's time and text).
pub(crate) fn to_text(html: &str, bounds: &OutputBounds) -> Result<String, Rejection> {
    let too_deep = |depth| Rejection::TooDeep {
        depth,
        limit: bounds.max_depth,
    };
    let at_least = container_depth(html);
    if at_least > bounds.max_depth {
        return Err(too_deep(at_least));
    }
    let config = html2text::config::plain_no_decorate()
        .raw_mode(true)
        .allow_width_overflow();
    let dom = config
        .parse_html(html.as_bytes())
        .map_err(|_| Rejection::NoText)?;
    let depth = html_depth(&dom.document);
    if depth > bounds.max_depth {
        return Err(Rejection::TooDeep {
            depth,
            limit: bounds.max_depth,
        });
    }
    let tree = config
        .dom_to_render_tree(&dom)
        .map_err(|_| Rejection::NoText)?;
    config
        .render_to_string(tree, HTML_LINE_WIDTH)
        .map_err(|_| Rejection::NoText)
}

/// Elements the HTML parser never closes on its own: an open one nests
/// whatever follows until its end tag.
const CONTAINERS: [&str; 16] = [
    "div",
    "blockquote",
    "section",
    "article",
    "aside",
    "nav",
    "main",
    "header",
    "footer",
    "span",
    "ul",
    "ol",
    "dl",
    "table",
    "form",
    "fieldset",
];

/// Elements whose content is text, not markup.
const RAW_TEXT: [&str; 4] = ["script", "style", "textarea", "title"];

/// A lower bound on how deep `html` nests, in one linear pass before any
/// parse: the nesting of [`CONTAINERS`] alone, outside comments and raw text.
pub(super) fn container_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let lower = html.to_ascii_lowercase();
    let (mut depth, mut deepest, mut at) = (0usize, 0usize, 0);
    while let Some(open) = lower[at..].find('<').map(|i| at + i) {
        let rest = &lower[open + 1..];
        if rest.starts_with("!--") {
            at = rest.find("-->").map_or(bytes.len(), |i| open + 1 + i + 3);
            continue;
        }
        let closing = rest.starts_with('/');
        let name_start = open + 1 + usize::from(closing);
        let name_len = lower[name_start..]
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(lower.len() - name_start);
        let name = &lower[name_start..name_start + name_len];
        let end = lower[name_start..]
            .find('>')
            .map_or(bytes.len(), |i| name_start + i + 1);
        if !closing && RAW_TEXT.contains(&name) {
            let close = format!("</{name}");
            at = lower[end..].find(&close).map_or(bytes.len(), |i| end + i);
            continue;
        }
        if CONTAINERS.contains(&name) {
            if closing {
                depth = depth.saturating_sub(1);
            } else if !lower[..end].ends_with("/>") {
                depth += 1;
                deepest = deepest.max(depth);
            }
        }
        at = end.max(open + 1);
    }
    deepest
}

/// How deep elements nest below `root` (without recursion: the depth is the
/// attacker's to choose).
fn html_depth(root: &html2text::Handle) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(root.clone(), 0)];
    while let Some((node, depth)) = pending.pop() {
        deepest = deepest.max(depth);
        pending.extend(
            node.children
                .borrow()
                .iter()
                .map(|child| (child.clone(), depth + 1)),
        );
    }
    deepest
}

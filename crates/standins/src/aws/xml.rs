//! Just enough XML for the EC2 proxy: EC2's error document, and a small element scanner that
//! finds the instance items of moto's answers so they can be rewritten in place (state held in
//! pending, state reason overridden, instance hidden).

use std::ops::Range;

/// EC2's error document (`Response/Errors/Error/{Code,Message}` and `RequestID`).
pub fn error_body(code: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{}</RequestID></Response>",
        escape(code),
        escape(message),
        uuid::Uuid::new_v4()
    )
}

/// Escapes text for an XML element.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One element of a document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    /// Local name (namespace prefix kept as written).
    pub name: String,
    /// From `<` of the start tag to `>` of the end tag.
    pub outer: Range<usize>,
    /// Content between the tags (empty for `<x/>`).
    pub inner: Range<usize>,
    /// Index of the parent element.
    pub parent: Option<usize>,
}

/// Scans the elements of a well-formed document (no CDATA or comments, as EC2 and moto write
/// it). Elements appear in document order.
pub fn scan(xml: &str) -> Vec<Node> {
    let mut nodes: Vec<Node> = vec![];
    let mut open: Vec<usize> = vec![];
    let mut pos = 0;
    while let Some(off) = xml[pos..].find('<') {
        let start = pos + off;
        let Some(close_off) = xml[start..].find('>') else {
            break;
        };
        let end = start + close_off + 1;
        let tag = &xml[start + 1..end - 1];
        pos = end;
        if tag.starts_with('?') || tag.starts_with('!') {
            continue;
        }
        if let Some(name) = tag.strip_prefix('/') {
            if let Some(i) = open.pop() {
                debug_assert_eq!(nodes[i].name, name.trim());
                nodes[i].outer.end = end;
                nodes[i].inner.end = start;
            }
            continue;
        }
        let self_closing = tag.ends_with('/');
        let name = tag
            .trim_end_matches('/')
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_string();
        let parent = open.last().copied();
        nodes.push(Node {
            name,
            outer: start..end,
            inner: end..end,
            parent,
        });
        if !self_closing {
            open.push(nodes.len() - 1);
        }
    }
    nodes
}

/// Indices of the direct children of `parent` named `name`.
pub fn children<'a>(
    nodes: &'a [Node],
    parent: usize,
    name: &'a str,
) -> impl Iterator<Item = usize> + 'a {
    nodes
        .iter()
        .enumerate()
        .filter(move |(_, n)| n.parent == Some(parent) && n.name == name)
        .map(|(i, _)| i)
}

/// Text content of the first direct child `name` of `parent`.
pub fn child_text<'a>(xml: &'a str, nodes: &[Node], parent: usize, name: &str) -> Option<&'a str> {
    children(nodes, parent, name)
        .next()
        .map(|i| &xml[nodes[i].inner.clone()])
}

/// Indices of instance items: `item` elements directly inside an `instancesSet`.
pub fn instance_items(nodes: &[Node]) -> Vec<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.name == "item" && n.parent.is_some_and(|p| nodes[p].name == "instancesSet")
        })
        .map(|(i, _)| i)
        .collect()
}

/// Applies non-overlapping edits (range replaced by text).
pub fn apply(xml: &str, mut edits: Vec<(Range<usize>, String)>) -> String {
    edits.sort_by_key(|(r, _)| std::cmp::Reverse(r.start));
    let mut out = xml.to_string();
    for (r, text) in edits {
        out.replace_range(r, &text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><reservationSet><item><reservationId>r-1</reservationId><groupSet/><instancesSet><item><blockDeviceMapping><item><deviceName>/dev/sda1</deviceName></item></blockDeviceMapping><stateReason><code/><message/></stateReason><instanceId>i-1</instanceId><instanceState><code>16</code><name>running</name></instanceState></item><item><instanceId>i-2</instanceId><instanceState><code>48</code><name>terminated</name></instanceState></item></instancesSet></item></reservationSet><nextToken>abc</nextToken></DescribeInstancesResponse>"#;

    #[test]
    fn finds_instance_items_and_their_children() {
        let nodes = scan(DOC);
        let items = instance_items(&nodes);
        assert_eq!(items.len(), 2);
        assert_eq!(child_text(DOC, &nodes, items[0], "instanceId"), Some("i-1"));
        assert_eq!(child_text(DOC, &nodes, items[1], "instanceId"), Some("i-2"));
        let state = children(&nodes, items[0], "instanceState")
            .next()
            .expect("state");
        assert_eq!(child_text(DOC, &nodes, state, "name"), Some("running"));
        let root = nodes
            .iter()
            .position(|n| n.name == "DescribeInstancesResponse")
            .expect("root");
        assert_eq!(child_text(DOC, &nodes, root, "nextToken"), Some("abc"));
    }

    #[test]
    fn edits_rewrite_in_place() {
        let nodes = scan(DOC);
        let items = instance_items(&nodes);
        let state = children(&nodes, items[0], "instanceState")
            .next()
            .expect("state");
        let out = apply(
            DOC,
            vec![
                (
                    nodes[state].outer.clone(),
                    "<instanceState><code>0</code><name>pending</name></instanceState>".into(),
                ),
                (nodes[items[1]].outer.clone(), String::new()),
            ],
        );
        assert!(out.contains("<name>pending</name>"));
        assert!(!out.contains("i-2"));
        assert_eq!(instance_items(&scan(&out)).len(), 1);
    }

    #[test]
    fn error_document_has_ec2s_shape() {
        let e = error_body("RequestLimitExceeded", "Request limit exceeded.");
        assert!(e.contains("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>"));
    }
}

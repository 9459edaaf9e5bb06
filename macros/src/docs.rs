//! Doc comments: descriptions of connectors, fields, actions and parameters.

use std::collections::BTreeMap;

use syn::{Attribute, Expr, Lit, Meta};

/// The doc comment of an item, lines joined with `\n`, common indentation removed.
pub fn doc_of(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = doc_attrs(attrs)
        .map(|(_, s)| s)
        // `split`, not `lines`: an empty `///` line is a paragraph break.
        .flat_map(|s| {
            s.split('\n')
                .map(|l| l.trim_end_matches('\r').to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let indent = lines
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let joined: Vec<&str> = lines
        .iter()
        .map(|l| {
            if l.len() >= indent {
                &l[indent..]
            } else {
                l.trim()
            }
        })
        .map(str::trim_end)
        .collect();
    joined.join("\n").trim().to_owned()
}

/// The `#[doc = "..."]` attributes (one per `///` line) with their text.
fn doc_attrs(attrs: &[Attribute]) -> impl Iterator<Item = (&Attribute, String)> {
    attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit {
                    lit: Lit::Str(s), ..
                }) => Some((a, s.value())),
                _ => None,
            },
            _ => None,
        })
}

/// For a heading line (`# ...`), whether it opens the `# Arguments`
/// section; `None` for any other line.
fn arguments_heading(trimmed: &str) -> Option<bool> {
    trimmed.starts_with('#').then(|| {
        trimmed
            .trim_start_matches('#')
            .trim()
            .eq_ignore_ascii_case("arguments")
    })
}

/// An `# Arguments` entry line, `* `name` - text` or `- `name`: text`: the
/// name and the rest of the line after it.
fn argument_entry(trimmed: &str) -> Option<(&str, &str)> {
    let rest = trimmed
        .strip_prefix("* ")
        .or_else(|| trimmed.strip_prefix("- "))?
        .strip_prefix('`')?;
    let end = rest.find('`')?;
    Some((&rest[..end], &rest[end + 1..]))
}

/// Splits a fn's doc into its description and the entries of its
/// `# Arguments` section (`* `name` - text` or `- `name`: text`).
pub fn split_arguments(doc: &str) -> (String, BTreeMap<String, String>) {
    let mut description = Vec::new();
    let mut args = BTreeMap::new();
    let mut in_args = false;
    let mut current: Option<String> = None;
    for line in doc.lines() {
        let trimmed = line.trim();
        if let Some(opens) = arguments_heading(trimmed) {
            in_args = opens;
            current = None;
            if in_args {
                continue;
            }
        }
        if !in_args {
            description.push(line);
            continue;
        }
        if let Some((name, rest)) = argument_entry(trimmed) {
            let text = rest.trim_start_matches([' ', '-', ':', '—']).trim();
            args.insert(name.to_owned(), text.to_owned());
            current = Some(name.to_owned());
            continue;
        }
        if let (Some(name), false) = (&current, trimmed.is_empty()) {
            let entry = args.entry(name.clone()).or_default();
            entry.push(' ');
            entry.push_str(trimmed);
        }
    }
    (description.join("\n").trim().to_owned(), args)
}

/// The doc attribute (one `///` line) that holds the `# Arguments` entry of
/// `name`, to point an error at; the first doc line if no line alone holds it.
pub fn argument_doc_attr<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    let docs: Vec<(&Attribute, String)> = doc_attrs(attrs).collect();
    let mut in_args = false;
    for (attr, text) in &docs {
        for line in text.split('\n') {
            let trimmed = line.trim();
            if let Some(opens) = arguments_heading(trimmed) {
                in_args = opens;
                continue;
            }
            if in_args && argument_entry(trimmed).is_some_and(|(entry, _)| entry == name) {
                return Some(attr);
            }
        }
    }
    docs.first().map(|(attr, _)| *attr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_become_parameter_docs() {
        let doc = "List files.\n\n# Arguments\n* `glob` - Filter by a glob pattern,\n  e.g. `*.rs`.\n- `limit`: At most this many.\n\n# Errors\nnone";
        let (desc, args) = split_arguments(doc);
        assert_eq!(desc, "List files.\n\n# Errors\nnone");
        assert_eq!(args["glob"], "Filter by a glob pattern, e.g. `*.rs`.");
        assert_eq!(args["limit"], "At most this many.");
    }

    #[test]
    fn the_line_of_an_argument_entry_is_found() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[doc = " List `dir`."]),
            syn::parse_quote!(#[doc = " # Arguments"]),
            syn::parse_quote!(#[doc = " * `dir` - The directory."]),
            syn::parse_quote!(#[doc = " * `limt` - At most this many."]),
        ];
        assert!(std::ptr::eq(
            argument_doc_attr(&attrs, "limt").unwrap(),
            &attrs[3]
        ));
        assert!(std::ptr::eq(
            argument_doc_attr(&attrs, "dir").unwrap(),
            &attrs[2]
        ));
    }

    #[test]
    fn doc_lines_are_dedented() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[doc = " Hello"]),
            syn::parse_quote!(#[doc = "   indented"]),
        ];
        assert_eq!(doc_of(&attrs), "Hello\n  indented");
    }
}

#[cfg(test)]
mod paragraph_tests {
    use super::*;

    #[test]
    fn empty_doc_lines_keep_paragraphs_apart() {
        let attrs: Vec<Attribute> = vec![
            syn::parse_quote!(#[doc = " A."]),
            syn::parse_quote!(#[doc = ""]),
            syn::parse_quote!(#[doc = " B."]),
        ];
        assert_eq!(doc_of(&attrs), "A.\n\nB.");
    }
}

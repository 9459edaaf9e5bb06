//! "Did you mean ...?" hints and name lists for error messages about names
//! typed by people (actions, connectors, instances, ...).

/// The known name closest to `typed`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (typed.chars().count() / 3).max(2);
    known
        .into_iter()
        .map(|k| (edit_distance(typed, k), k))
        .filter(|(d, k)| *d <= limit && *d < k.chars().count().min(typed.chars().count()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// ` (did you mean `x`?)`, or nothing when no known name is close.
pub fn hint<'a>(typed: &str, known: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(typed, known)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

/// `a, b, c`, or `none` for an empty list.
pub fn list<I, S>(names: I) -> String
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let joined = names
        .into_iter()
        .map(|s| s.as_ref().to_owned())
        .collect::<Vec<_>>()
        .join(", ");
    if joined.is_empty() {
        "none".to_owned()
    } else {
        joined
    }
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_names_only() {
        assert_eq!(did_you_mean("ecoh", ["echo", "shout"]), Some("echo"));
        assert_eq!(did_you_mean("lsit", ["list", "stat"]), Some("list"));
        assert_eq!(did_you_mean("zzzzzz", ["echo", "shout"]), None);
        assert_eq!(did_you_mean("ab", ["xy"]), None);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(hint("ecoh", ["echo"]), " (did you mean `echo`?)");
        assert_eq!(list(Vec::<String>::new()), "none");
        assert_eq!(list(["a", "b"]), "a, b");
    }
}

//! "Did you mean ...?" for names typed by people.

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
    }
}

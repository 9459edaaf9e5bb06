use spoke::prelude::*;

/// Buckets with and without a TTL, and one named by a raw identifier.
#[connector(name = "cache", buckets(pages, sessions(ttl = "30m"), r#type))]
pub struct Cache {}

#[connector]
impl Cache {
    /// Counts a page view; the store's errors convert to action errors.
    #[action(write)]
    async fn view(&self, ctx: &Context, page: String) -> Result<u64, ActionError> {
        let pages = ctx.store().bucket("pages")?;
        let seen = pages.get::<u64>(&page).await?;
        let count = seen.as_ref().map_or(0, |s| s.value) + 1;
        match seen {
            Some(s) => pages.update(&page, &count, s.revision).await?,
            None => pages.create(&page, &count).await?,
        };
        Ok(count)
    }
}

fn main() {
    let manifest = spoke::registry::Registry::from_inventory()
        .unwrap()
        .get("cache")
        .unwrap()
        .manifest()
        .clone();
    let buckets: Vec<(String, Option<u64>)> = manifest
        .buckets
        .iter()
        .map(|b| (b.name.clone(), b.ttl_ms))
        .collect();
    assert_eq!(
        buckets,
        [
            ("pages".to_owned(), None),
            ("sessions".to_owned(), Some(1_800_000)),
            ("type".to_owned(), None)
        ]
    );
    assert!(manifest.capabilities.iter().any(|c| c == "store"));
}

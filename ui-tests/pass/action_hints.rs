// `destructive` and `idempotent` on writes reach the manifest; reads are
// neither destructive nor in need of saying they are idempotent.
use spoke::prelude::*;

#[connector(name = "tickets")]
pub struct Tickets {}

#[connector]
impl Tickets {
    #[action(write, destructive = false)]
    fn create(&self) {}

    #[action(write, destructive = false, idempotent)]
    fn close(&self) {}

    #[action(write, destructive = true)]
    fn purge(&self) {}

    #[action]
    fn reset(&self) {}

    #[action(read)]
    fn get(&self) {}
}

fn main() {
    let registry = spoke::Registry::from_inventory().unwrap();
    let manifest = registry.get("tickets").unwrap().manifest();
    let hints = |name: &str| {
        let a = manifest.action(name).unwrap();
        (a.destructive, a.idempotent)
    };
    assert_eq!(hints("create"), (false, false));
    assert_eq!(hints("close"), (false, true));
    assert_eq!(hints("purge"), (true, false));
    assert_eq!(hints("reset"), (true, false));
    assert_eq!(hints("get"), (false, true));
    // Both are in the manifest's JSON.
    let json = serde_json::to_value(manifest.action("create").unwrap()).unwrap();
    assert_eq!((json["destructive"].clone(), json["idempotent"].clone()), (false.into(), false.into()));
}

// One connector, its actions spread over an impl block and free functions in
// two modules.
use spoke::prelude::*;

#[connector(name = "notes")]
pub struct Notes {
    #[config_field(default = "main")]
    book: String,
}

#[connector]
impl Notes {
    #[action(read)]
    fn book(&self) -> String {
        self.book.clone()
    }
}

mod reading {
    use super::Notes;
    use spoke::prelude::*;

    /// Reads a note.
    #[action(connector = Notes, read)]
    pub async fn read(conn: &Notes, id: u64) -> Result<String, ActionError> {
        Ok(format!("{}#{id}", conn.book))
    }
}

mod writing {
    pub mod deep {
        use spoke::prelude::*;

        #[action(connector = crate::Notes, write)]
        pub fn write(conn: &crate::Notes, ctx: &Context, text: String) -> usize {
            let _ = ctx;
            conn.book.len() + text.len()
        }
    }
}

fn main() {
    let _ = reading::read;
    let _ = writing::deep::write;
}

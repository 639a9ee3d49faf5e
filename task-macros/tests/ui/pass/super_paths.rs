#[derive(serde::Serialize, serde::Deserialize)]
pub struct Email {
    pub to: String,
}

pub mod mail {
    use task_core::{task, TaskResult};

    /// `super::Email` must keep meaning the parent's `Email`.
    #[task]
    pub async fn send(email: super::Email, copies: Vec<super::Email>) -> TaskResult<usize> {
        Ok(email.to.len() + copies.len())
    }
}

fn main() {
    let _ = mail::send::signature(Email { to: "a".into() }, Vec::new());
    let _ = mail::send::Args { email: Email { to: "b".into() }, copies: vec![] };
}

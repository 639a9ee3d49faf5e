use task_core::{task, TaskResult};

struct Mailer;

impl Mailer {
    #[task]
    async fn send(&self, to: String) -> TaskResult<()> {
        let _ = to;
        Ok(())
    }
}

fn main() {}

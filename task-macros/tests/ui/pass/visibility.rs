pub mod outer {
    pub mod inner {
        use task_core::{task, TaskResult};

        #[task]
        async fn private_task() -> TaskResult<()> {
            Ok(())
        }

        #[task]
        pub(crate) async fn crate_task() -> TaskResult<()> {
            Ok(())
        }

        #[task]
        pub(super) async fn parent_task() -> TaskResult<()> {
            Ok(())
        }

        #[task]
        pub(in crate::outer) async fn path_task() -> TaskResult<()> {
            Ok(())
        }

        #[task]
        pub async fn public_task() -> TaskResult<()> {
            Ok(())
        }

        pub fn use_private() {
            let _ = private_task::signature();
        }
    }

    pub fn use_restricted() {
        let _ = inner::parent_task::signature();
        let _ = inner::path_task::signature();
    }
}

fn main() {
    outer::inner::use_private();
    outer::use_restricted();
    let _ = outer::inner::crate_task::signature();
    let _ = outer::inner::public_task::signature();
}

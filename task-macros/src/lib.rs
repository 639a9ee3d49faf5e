//! The `#[task]` attribute of Celerity. Use it through `task_core::task`; the
//! generated code refers to `::task_core` (or the path given with `crate = ..`).
//!
//! The pipeline is parse → validate → expand, in `proc_macro2` below this file so
//! each step is unit-testable: `attr` reads the options (declared once, in one table),
//! `input` reads and checks the signature (the body stays opaque tokens), `expand`
//! writes the code, and `fallback` keeps the user's function (and as much of the API
//! as it can) when there is an error, so one mistake gives one error.

mod attr;
mod expand;
mod fallback;
mod input;

use proc_macro::TokenStream;

/// Makes a module-level `fn` or `async fn` a Celerity task. See `task_core`'s docs.
#[proc_macro_attribute]
pub fn task(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(args.into(), item.into()).into()
}

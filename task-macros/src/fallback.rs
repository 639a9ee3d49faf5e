//! On error, still emit the user's function (so its body keeps type-checking and
//! callers of the function itself see no second wave), the errors, and an empty
//! companion module (so `use add;`-style paths still resolve). thiserror's and
//! tokio's habit.

use proc_macro2::TokenStream;
use quote::quote;

use crate::expand::inner_vis;
use crate::input::ItemFn;

/// The item did not even parse as a function: give it back with the error.
pub(crate) fn unparsed(mut item: TokenStream, error: &syn::Error) -> TokenStream {
    item.extend(error.to_compile_error());
    item
}

/// The signature broke a rule: the function, the errors, and a module with `NAME`.
pub(crate) fn signature_error(item: &ItemFn, error: &syn::Error) -> TokenStream {
    let ItemFn { attrs, vis, sig, body } = item;
    let ident = &sig.ident;
    let inner = inner_vis(vis);
    let error = error.to_compile_error();
    if sig.receiver().is_some() {
        // A method lives in an `impl`, where no module may be declared.
        return quote!(#(#attrs)* #vis #sig #body #error);
    }
    quote! {
        #(#attrs)* #vis #sig #body
        #error
        #[allow(non_snake_case, unreachable_pub, dead_code)]
        #vis mod #ident {
            #inner const NAME: &str = ::core::module_path!();
        }
    }
}

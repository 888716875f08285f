//! Integration tests of the pipeline library.

mod inspect;

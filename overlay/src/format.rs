//! A connection as a line of text: the classic leco line or a template.
//! (Stub: the lines engineer owns it.)

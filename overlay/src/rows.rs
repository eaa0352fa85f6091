//! Row allocation: a line keeps its row while it lives. (Stub: the lines
//! engineer owns it.)

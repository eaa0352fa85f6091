//! Events read from a file of JSON lines, as `leco-service --standalone
//! --json` prints them. (Stub: the lines engineer owns it.)

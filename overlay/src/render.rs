//! Drawing a [`Frame`](crate::model::Frame) into a pixmap with tiny-skia and
//! cosmic-text, and converting it for wl_shm. (Stub: the render engineer
//! owns it.)

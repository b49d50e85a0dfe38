//! `normalizePath` / `normalizePathWin`: libmodsecurity's path normalisation.

use std::borrow::Cow;

use super::if_changed;

/// Collapses repeated slashes, removes `./` self references and resolves `dir/../` back
/// references without climbing above the root; a relative path keeps the `../` it cannot
/// resolve. A trailing slash is kept only if the input had one. With `win`, backslashes are
/// turned into slashes first.
pub(super) fn normalize(input: &[u8], win: bool) -> Cow<'_, [u8]> {
    if input.is_empty() {
        return Cow::Borrowed(input);
    }
    let mut buf = input.to_vec();
    if win {
        for b in &mut buf {
            if *b == b'\\' {
                *b = b'/';
            }
        }
    }
    let len = normalize_in_place(&mut buf);
    buf.truncate(len);
    if_changed(input, buf)
}

/// The port of `normalize_path_inplace` over indices: returns the normalised length.
fn normalize_in_place(buf: &mut [u8]) -> usize {
    let end = buf.len() - 1;
    let relative = buf[0] != b'/';
    let trailing = buf[end] == b'/';
    let (mut src, mut dst): (usize, isize) = (0, 0);
    let mut hitroot = false;
    let mut done = false;
    while !done && src <= end && (dst as usize) <= end {
        // Only a segment's last byte (or the input's) triggers normalisation.
        let at_segment_end = if src == end {
            done = true;
            true
        } else {
            buf[src + 1] == b'/'
        };
        if at_segment_end && !(src != end && buf[src] == b'/') {
            if buf[src] == b'.' {
                if dst > 0 && buf[dst as usize - 1] == b'.' {
                    // A back reference `..`.
                    if relative && (hitroot || dst <= 2) {
                        hitroot = true;
                    } else {
                        dst -= 3;
                        while dst > 0 && buf[dst as usize] != b'/' {
                            dst -= 1;
                        }
                        if dst <= 0 {
                            hitroot = true;
                            dst = 0;
                            if !relative && src == end {
                                dst += 1;
                            }
                        }
                        if done {
                            continue;
                        }
                        src += 1;
                    }
                } else if dst == 0 {
                    // A relative self reference: dropped.
                    if done {
                        continue;
                    }
                    src += 1;
                } else if buf[dst as usize - 1] == b'/' {
                    // A self reference `/.`: dropped.
                    if done {
                        continue;
                    }
                    dst -= 1;
                    src += 1;
                }
            } else if dst > 0 {
                hitroot = false;
            }
        }
        // Copy the byte, skipping to the last of several slashes.
        if buf[src] == b'/' {
            while src < end && buf[src + 1] == b'/' {
                src += 1;
            }
            if relative && dst == 0 {
                src += 1;
                continue;
            }
        }
        buf[dst as usize] = buf[src];
        dst += 1;
        src += 1;
    }
    let mut dst = dst as usize;
    if !trailing && dst > 0 && buf[dst - 1] == b'/' {
        dst -= 1;
    }
    dst
}

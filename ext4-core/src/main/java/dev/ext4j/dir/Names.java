package dev.ext4j.dir;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.DirEntry;

/**
 * The one check of a directory entry name, made where an operation comes in (lookup, create,
 * link, unlink, rename), with the kernel's answers:
 * <ul>
 * <li>more than EXT4_NAME_LEN (255) bytes: ENAMETOOLONG, as ext4_lookup() and the path walk's
 *     NAME_MAX check give;
 * <li>empty: EINVAL, as ext4_add_entry() gives;
 * <li>holding '/' or NUL: EINVAL. The VFS never hands a filesystem such a name (the path walk
 *     splits at '/', and lookup_one_len() refuses one with EACCES), but the core is also called
 *     from Java, where it is a bad argument.
 * </ul>
 * What "." and ".." mean depends on the operation (EEXIST for a create, EINVAL for a removal), so
 * callers test {@link #isDotOrDotDot} themselves.
 */
public final class Names {

    private Names() {
    }

    /**
     * Checks that {@code name} can be one directory entry's name.
     *
     * @throws Ext4Exception ENAMETOOLONG past 255 bytes; EINVAL when empty or holding '/' or NUL
     */
    public static void check(byte[] name) throws Ext4Exception {
        if (name.length > DirEntry.MAX_NAME_LEN) {
            throw new Ext4Exception(Errno.ENAMETOOLONG, "name of " + name.length + " bytes (max " + DirEntry.MAX_NAME_LEN + ")");
        }
        if (name.length == 0) {
            throw new Ext4Exception(Errno.EINVAL, "empty name");
        }
        for (byte c : name) {
            if (c == '/' || c == 0) {
                throw new Ext4Exception(Errno.EINVAL, "name '" + printable(name) + "' contains '/' or NUL");
            }
        }
    }

    /** True for "." and "..". */
    public static boolean isDotOrDotDot(byte[] name) {
        return name.length == 1 && name[0] == '.' || name.length == 2 && name[0] == '.' && name[1] == '.';
    }

    /** The name for a message: printable ASCII as is, other bytes (and '\') as \xNN. */
    public static String printable(byte[] name) {
        StringBuilder sb = new StringBuilder();
        for (byte c : name) {
            int v = c & 0xFF;
            if (v >= 0x20 && v < 0x7F && v != '\\') {
                sb.append((char) v);
            } else {
                sb.append(String.format("\\x%02x", v));
            }
        }
        return sb.toString();
    }
}

package dev.ext4j.dir;

import dev.ext4j.Ext4Exception;
import dev.ext4j.format.DirEntry;
import java.nio.ByteBuffer;

/**
 * ext4_check_dir_entry(): an entry is read only after its header is known to fit in the bytes
 * left, and its rec_len and name_len are checked against those bytes.
 */
public final class DirEntryCheck {

    private DirEntryCheck() {
    }

    /**
     * The rec_len of the entry at {@code off}: checked as {@link #check} does, unless the entries
     * around it are known {@code sound} (a block whose every entry passed once, see
     * BlockDirectory's read).
     */
    static int recLen(ByteBuffer b, int off, int end, DirFormat fmt, Object where, boolean sound) throws Ext4Exception {
        return sound ? DirEntry.recLen(b, off, fmt.blockSize()) : check(b, off, end, fmt, where);
    }

    /**
     * Checks the entry at {@code off} in a region ending at {@code end} and returns its rec_len.
     *
     * @param where names the directory and block for the message
     */
    public static int check(ByteBuffer b, int off, int end, DirFormat fmt, Object where) throws Ext4Exception {
        int left = end - off;
        if (left < DirEntry.HEADER_SIZE) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " does not fit: " + left
                    + " bytes left, a header needs " + DirEntry.HEADER_SIZE);
        }
        int recLen = DirEntry.recLen(b, off, fmt.blockSize());
        int nameLen = DirEntry.nameLen(b, off, fmt.fileType());
        if (recLen < DirEntry.minRecLen(1)) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " has rec_len " + recLen + " (min " + DirEntry.minRecLen(1) + ")");
        }
        if (recLen % 4 != 0) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " has rec_len " + recLen + " (not a multiple of 4)");
        }
        if (recLen > left) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " has rec_len " + recLen + " past the end (" + left + " bytes left)");
        }
        if (nameLen > DirEntry.MAX_NAME_LEN || DirEntry.minRecLen(nameLen) > recLen) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " has name_len " + nameLen + " larger than its rec_len " + recLen);
        }
        long ino = DirEntry.inode(b, off);
        if (ino > fmt.inodesCount()) {
            throw Ext4Exception.corrupted(where + ": dirent at " + off + " points to inode " + ino + " (max " + fmt.inodesCount() + ")");
        }
        return recLen;
    }
}

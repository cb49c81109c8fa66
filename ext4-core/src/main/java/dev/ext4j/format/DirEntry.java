package dev.ext4j.format;

import java.nio.ByteBuffer;

/**
 * Static accessors for struct ext4_dir_entry_2 at an offset in a buffer (directory entries are
 * packed, so a view object per entry would only add garbage).
 *
 * <pre>
 * 0x0 inode (32)  0x4 rec_len (16)  0x6 name_len (8)  0x7 file_type (8)  0x8 name[name_len]
 * </pre>
 * Without the filetype feature, name_len is 16 bits and there is no file_type.
 * The checksum tail (struct ext4_dir_entry_tail) is a 12-byte fake entry at the end of a leaf
 * block: inode 0, rec_len 12, name_len 0, file_type 0xDE, then det_checksum.
 */
public final class DirEntry {
    public static final int HEADER_SIZE = 8;
    public static final int MAX_NAME_LEN = 255;
    public static final int TAIL_SIZE = 12;
    public static final int TAIL_FILE_TYPE = 0xDE;

    static final int INODE = 0x0;
    static final int REC_LEN = 0x4;
    static final int NAME_LEN = 0x6;
    static final int FILE_TYPE = 0x7;
    static final int DET_CHECKSUM = 0x8;

    /** file_type values. */
    public static final int FT_UNKNOWN = 0, FT_REG_FILE = 1, FT_DIR = 2, FT_CHRDEV = 3, FT_BLKDEV = 4,
            FT_FIFO = 5, FT_SOCK = 6, FT_SYMLINK = 7;

    private DirEntry() {
    }

    public static long inode(ByteBuffer b, int off) {
        return b.getInt(off + INODE) & 0xFFFFFFFFL;
    }

    /**
     * rec_len as stored, decoded as ext4_rec_len_from_disk(): for 64 KiB blocks the values 0 and
     * 65535 mean a whole block.
     */
    public static int recLen(ByteBuffer b, int off, int blockSize) {
        int len = b.getShort(off + REC_LEN) & 0xFFFF;
        if (blockSize < 65536) {
            return len;
        }
        if (len == 65535 || len == 0) {
            return blockSize;
        }
        return (len & 65532) | ((len & 3) << 16);
    }

    public static int nameLen(ByteBuffer b, int off, boolean fileTypeFeature) {
        return fileTypeFeature ? b.get(off + NAME_LEN) & 0xFF : b.getShort(off + NAME_LEN) & 0xFFFF;
    }

    public static int fileType(ByteBuffer b, int off, boolean fileTypeFeature) {
        return fileTypeFeature ? b.get(off + FILE_TYPE) & 0xFF : FT_UNKNOWN;
    }

    public static byte[] name(ByteBuffer b, int off, int nameLen) {
        byte[] n = new byte[nameLen];
        b.get(off + HEADER_SIZE, n);
        return n;
    }

    /** True when the bytes at {@code off} are a name equal to {@code name}. */
    public static boolean nameEquals(ByteBuffer b, int off, int nameLen, byte[] name) {
        if (nameLen != name.length) {
            return false;
        }
        for (int i = 0; i < nameLen; i++) {
            if (b.get(off + HEADER_SIZE + i) != name[i]) {
                return false;
            }
        }
        return true;
    }

    /** EXT4_DIR_REC_LEN(): the smallest rec_len that holds a name of {@code nameLen} bytes. */
    public static int minRecLen(int nameLen) {
        return (HEADER_SIZE + nameLen + 3) & ~3;
    }

    /** True when the 12 bytes at {@code off} are a checksum tail. */
    public static boolean isTail(ByteBuffer b, int off) {
        return b.getInt(off + INODE) == 0 && (b.getShort(off + REC_LEN) & 0xFFFF) == TAIL_SIZE
                && b.get(off + NAME_LEN) == 0 && (b.get(off + FILE_TYPE) & 0xFF) == TAIL_FILE_TYPE;
    }

    public static int tailChecksum(ByteBuffer b, int tailOff) {
        return b.getInt(tailOff + DET_CHECKSUM);
    }

    // ---- writers (directory modification, fs/ext4/namei.c); the buffer must be writable ----

    public static void setInode(ByteBuffer b, int off, long ino) {
        b.putInt(off + INODE, (int) ino);
    }

    /**
     * ext4_rec_len_to_disk(): stores {@code len}, which must be a multiple of 4 and at most the
     * block size. For 64 KiB blocks a whole block is stored as 65535; larger blocks keep bits 16-17
     * in the two low bits.
     */
    public static void setRecLen(ByteBuffer b, int off, int len, int blockSize) {
        if (len > blockSize || (len & 3) != 0 || blockSize > (1 << 18)) {
            throw new IllegalArgumentException("rec_len " + len + " for block size " + blockSize);
        }
        int v;
        if (len < 65536) {
            v = len;
        } else if (len == blockSize) {
            v = blockSize == 65536 ? 65535 : 0;
        } else {
            v = (len & 65532) | ((len >> 16) & 3);
        }
        b.putShort(off + REC_LEN, (short) v);
    }

    /**
     * Stores name_len and file_type as ext4_insert_dentry() does: with the filetype feature one byte
     * each; without it a 16-bit name_len (file_type is then its zero high byte).
     */
    public static void setNameLenAndType(ByteBuffer b, int off, int nameLen, int fileType, boolean fileTypeFeature) {
        if (fileTypeFeature) {
            b.put(off + NAME_LEN, (byte) nameLen);
            b.put(off + FILE_TYPE, (byte) fileType);
        } else {
            b.putShort(off + NAME_LEN, (short) nameLen);
        }
    }

    /** Sets file_type alone (ext4_setent() on rename); without the filetype feature nothing is stored. */
    public static void setFileType(ByteBuffer b, int off, int fileType, boolean fileTypeFeature) {
        if (fileTypeFeature) {
            b.put(off + FILE_TYPE, (byte) fileType);
        }
    }

    public static void setName(ByteBuffer b, int off, byte[] name) {
        b.put(off + HEADER_SIZE, name);
    }

    /** ext4_initialize_dirent_tail(): a zeroed 12-byte tail at the block end, rec_len 12, file_type 0xDE. */
    public static void initTail(ByteBuffer b, int blockSize) {
        int off = blockSize - TAIL_SIZE;
        for (int i = 0; i < TAIL_SIZE; i++) {
            b.put(off + i, (byte) 0);
        }
        b.putShort(off + REC_LEN, (short) TAIL_SIZE);
        b.put(off + FILE_TYPE, (byte) TAIL_FILE_TYPE);
    }

    public static void setTailChecksum(ByteBuffer b, int tailOff, int checksum) {
        b.putInt(tailOff + DET_CHECKSUM, checksum);
    }

    /** File type from an inode's mode, as a dirent's file_type. */
    public static int fileTypeOfMode(int mode) {
        return switch (mode & Inode.S_IFMT) {
            case Inode.S_IFREG -> FT_REG_FILE;
            case Inode.S_IFDIR -> FT_DIR;
            case Inode.S_IFCHR -> FT_CHRDEV;
            case Inode.S_IFBLK -> FT_BLKDEV;
            case Inode.S_IFIFO -> FT_FIFO;
            case Inode.S_IFSOCK -> FT_SOCK;
            case Inode.S_IFLNK -> FT_SYMLINK;
            default -> FT_UNKNOWN;
        };
    }
}

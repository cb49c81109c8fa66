package dev.ext4j.dir;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.DirEntry;
import java.nio.ByteBuffer;

/**
 * A run of directory entries that covers {@code start .. end - 1} of a buffer exactly: the entry
 * area of a directory leaf block (its checksum tail left out by the caller), or one region of an
 * inline directory (i_block after the parent number, or the system.data value). The entry-level
 * work of fs/ext4/namei.c that both kinds share: ext4_find_dest_de(), ext4_insert_dentry() and
 * ext4_generic_delete_entry(). Every entry walked over is checked as ext4_check_dir_entry() does
 * ({@link DirEntryCheck}).
 *
 * <p>Changes the buffer in place; the caller writes it back and seals the checksum tail.
 */
public final class DirentRegion {
    private final ByteBuffer b;
    private final int start;
    private final int end;
    private final DirFormat fmt;
    private final Object where;
    /** Every entry is known to pass {@link DirEntryCheck} (a block checked once per contents). */
    private final boolean sound;

    /**
     * @param b     the bytes, little-endian (writable for the changing methods)
     * @param where names the block or region in messages ({@code toString()} is called only then)
     */
    public DirentRegion(ByteBuffer b, int start, int end, DirFormat fmt, Object where) {
        this(b, start, end, fmt, where, false);
    }

    DirentRegion(ByteBuffer b, int start, int end, DirFormat fmt, Object where, boolean sound) {
        this.b = b;
        this.start = start;
        this.end = end;
        this.fmt = fmt;
        this.where = where;
        this.sound = sound;
    }

    private int recLen(int off) throws Ext4Exception {
        return DirEntryCheck.recLen(b, off, end, fmt, where, sound);
    }

    /**
     * ext4_find_dest_de(): the offset of the first entry with room for an entry named
     * {@code name} (see {@link #room}), or -1.
     *
     * @throws Ext4Exception EEXIST when a live entry on the way has the name; EUCLEAN for a
     *                       damaged entry
     */
    public int findSlot(byte[] name) throws Ext4Exception {
        int reclen = DirEntry.minRecLen(name.length);
        boolean ft = fmt.fileType();
        for (int off = start; off <= end - reclen; ) {
            int rlen = recLen(off);
            long ino = DirEntry.inode(b, off);
            int nl = DirEntry.nameLen(b, off, ft);
            if (ino != 0 && DirEntry.nameEquals(b, off, nl, name)) {
                throw new Ext4Exception(Errno.EEXIST, where + ": '" + Names.printable(name) + "' exists");
            }
            if ((ino != 0 ? rlen - DirEntry.minRecLen(nl) : rlen) >= reclen) {
                return off;
            }
            off += rlen;
        }
        return -1;
    }

    /**
     * The bytes a new entry can take at the entry at {@code off}: a deleted entry's whole rec_len,
     * a live one's slack past its minimal size.
     */
    public int room(int off) {
        int rlen = DirEntry.recLen(b, off, fmt.blockSize());
        return DirEntry.inode(b, off) != 0 ? rlen - DirEntry.minRecLen(DirEntry.nameLen(b, off, fmt.fileType())) : rlen;
    }

    /**
     * ext4_insert_dentry(): puts the entry into the entry at {@code off}, which has the room: a
     * deleted entry is taken over, a live one shrinks to its minimal size and the new entry takes
     * the rest. The bytes after the new name are zeroed.
     *
     * @param fileType stored only with the filetype feature
     */
    public void insert(int off, byte[] name, long ino, int fileType) {
        int bs = fmt.blockSize();
        int rlen = DirEntry.recLen(b, off, bs);
        if (DirEntry.inode(b, off) != 0) {
            int nlen = DirEntry.minRecLen(DirEntry.nameLen(b, off, fmt.fileType()));
            DirEntry.setRecLen(b, off + nlen, rlen - nlen, bs);
            DirEntry.setRecLen(b, off, nlen, bs);
            off += nlen;
            rlen -= nlen;
        }
        DirEntry.setInode(b, off, ino);
        DirEntry.setNameLenAndType(b, off, name.length, fmt.fileType() ? fileType : DirEntry.FT_UNKNOWN, fmt.fileType());
        DirEntry.setName(b, off, name);
        zero(b, off + DirEntry.HEADER_SIZE + name.length, off + rlen);
    }

    /** The offset of the live entry named {@code name}, or -1. */
    public int find(byte[] name) throws Ext4Exception {
        boolean ft = fmt.fileType();
        for (int off = start; off < end; ) {
            int rlen = recLen(off);
            if (DirEntry.inode(b, off) != 0 && DirEntry.nameEquals(b, off, DirEntry.nameLen(b, off, ft), name)) {
                return off;
            }
            off += rlen;
        }
        return -1;
    }

    /**
     * The offset of the entry before the one at {@code off}, or -1 when that one is first.
     *
     * @throws Ext4Exception EUCLEAN when no entry starts at {@code off}
     */
    public int previous(int off) throws Ext4Exception {
        int prev = -1;
        for (int o = start; o < end; ) {
            int rlen = recLen(o);
            if (o == off) {
                return prev;
            }
            prev = o;
            o += rlen;
        }
        throw Ext4Exception.corrupted(where + ": entry at " + off + " vanished");
    }

    /**
     * ext4_generic_delete_entry(): the entry at {@code off} joins the one before it
     * ({@code prev}, whose rec_len grows), or, first in the region ({@code prev} -1), keeps its
     * place with inode 0. Its bytes are zeroed (the rec_len of a first entry stays).
     */
    public void delete(int off, int prev) {
        int bs = fmt.blockSize();
        int rl = DirEntry.recLen(b, off, bs);
        if (prev >= 0) {
            DirEntry.setRecLen(b, prev, DirEntry.recLen(b, prev, bs) + rl, bs);
            zero(b, off, off + rl);
        } else {
            DirEntry.setInode(b, off, 0);
            zero(b, off + 6, off + rl);
        }
    }

    /** Zeroes {@code from .. to - 1} (nothing when {@code to <= from}). */
    static void zero(ByteBuffer b, int from, int to) {
        if (b.hasArray()) {
            java.util.Arrays.fill(b.array(), b.arrayOffset() + from, b.arrayOffset() + Math.max(from, to), (byte) 0);
            return;
        }
        for (int i = from; i < to; i++) {
            b.put(i, (byte) 0);
        }
    }
}

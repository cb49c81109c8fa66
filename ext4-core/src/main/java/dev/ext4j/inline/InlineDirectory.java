package dev.ext4j.inline;

import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.DirEntries;
import dev.ext4j.dir.DirEntryCheck;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.dir.DirSink;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Inode;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * A directory stored inline (fs/ext4/inline.c): the parent's inode number in the first four bytes
 * of i_block, entries in the remaining 56 bytes, and more entries in the value of the system.data
 * xattr. There are no "." and ".." entries on disk; readdir makes them up.
 *
 * <p>Positions: 0 is ".", {@link #DOTDOT_POS} is "..", and an entry at byte {@code off} of the inline
 * buffer has position {@code off - PARENT_SIZE + ENTRIES_POS}. The buffer holds exactly the inline
 * bytes; positions that point past it end the walk. Each entry is checked against the bytes left
 * in its region (i_block or xattr value) before any field is read, unlike the kernel's
 * ext4_read_inline_dir(), which compared positions against a bound that included the made-up dot
 * entries and could read past its buffer.
 */
public final class InlineDirectory implements DirEntries {
    /** The parent inode number at the start of i_block. */
    static final int PARENT_SIZE = 4;
    static final int DOTDOT_POS = DirEntry.minRecLen(1);
    static final int ENTRIES_POS = DOTDOT_POS + DirEntry.minRecLen(2);

    private final long ino;
    private final ByteBuffer buf;
    private final int iBlockEnd;
    private final DirFormat fmt;

    /**
     * @param iBlock     the 60 bytes of i_block
     * @param xattrValue the system.data value (may be empty)
     */
    public InlineDirectory(long ino, ByteBuffer iBlock, byte[] xattrValue, DirFormat fmt) {
        byte[] all = new byte[Inode.I_BLOCK_SIZE + xattrValue.length];
        iBlock.duplicate().position(0).get(all, 0, Inode.I_BLOCK_SIZE);
        System.arraycopy(xattrValue, 0, all, Inode.I_BLOCK_SIZE, xattrValue.length);
        this.ino = ino;
        this.buf = ByteBuffer.wrap(all).order(ByteOrder.LITTLE_ENDIAN);
        this.iBlockEnd = Inode.I_BLOCK_SIZE;
        this.fmt = fmt;
    }

    public long parent() {
        return buf.getInt(0) & 0xFFFFFFFFL;
    }

    private String where() {
        return "inline directory inode " + ino;
    }

    /** End of the region that holds byte {@code off}: i_block, or the xattr value. */
    private int regionEnd(int off) {
        return off < iBlockEnd ? iBlockEnd : buf.capacity();
    }

    @Override
    public long lookup(byte[] name) throws Ext4Exception {
        if (name.length == 1 && name[0] == '.') {
            return ino;
        }
        if (name.length == 2 && name[0] == '.' && name[1] == '.') {
            return parent();
        }
        long[] found = {0};
        walk(PARENT_SIZE, (off, recLen) -> {
            long e = DirEntry.inode(buf, off);
            if (e != 0 && DirEntry.nameEquals(buf, off, DirEntry.nameLen(buf, off, fmt.fileType()), name)) {
                found[0] = e;
                return false;
            }
            return true;
        });
        return found[0];
    }

    @Override
    public void readdir(long position, DirSink sink) throws Ext4Exception {
        if (position == 0 && !sink.accept(new byte[] {'.'}, ino, DirEntry.FT_DIR, DOTDOT_POS)) {
            return;
        }
        if (position <= DOTDOT_POS && !sink.accept(new byte[] {'.', '.'}, parent(), DirEntry.FT_DIR, ENTRIES_POS)) {
            return;
        }
        long from = Math.max(position, ENTRIES_POS) - ENTRIES_POS + PARENT_SIZE;
        if (from >= buf.capacity()) {
            return;
        }
        walk(PARENT_SIZE, (off, recLen) -> {
            long e = DirEntry.inode(buf, off);
            if (off < from || e == 0) {
                return true;
            }
            int nameLen = DirEntry.nameLen(buf, off, fmt.fileType());
            long next = (long) off + recLen - PARENT_SIZE + ENTRIES_POS;
            return sink.accept(DirEntry.name(buf, off, nameLen), e, DirEntry.fileType(buf, off, fmt.fileType()), next);
        });
    }

    /** Visits checked entries of both regions in order until the visitor returns false. */
    private void walk(int start, EntryVisitor visitor) throws Ext4Exception {
        int off = start;
        String where = where();
        while (off < buf.capacity()) {
            int recLen = DirEntryCheck.check(buf, off, regionEnd(off), fmt, where);
            if (!visitor.visit(off, recLen)) {
                return;
            }
            off += recLen;
        }
    }

    /** Visits one entry known to lie within its region. */
    @FunctionalInterface
    private interface EntryVisitor {
        boolean visit(int off, int recLen);
    }
}

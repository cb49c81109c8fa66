package dev.ext4j.inline;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.BlockDirectory;
import dev.ext4j.dir.DirChanges;
import dev.ext4j.dir.DirEntries;
import dev.ext4j.dir.DirEntryCheck;
import dev.ext4j.dir.DirFormat;
import dev.ext4j.dir.DirSink;
import dev.ext4j.dir.DirentRegion;
import dev.ext4j.dir.Names;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.Inode;
import dev.ext4j.io.BufferCache;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Changes to a directory stored inline (fs/ext4/inline.c): the parent's inode number in the first
 * four bytes of i_block, entries in the other 56, and more entries in the system.data value, each
 * region covered exactly by its entries (an entry never spans the two). A new entry goes into the
 * first region with room (ext4_try_add_inline_entry()); when i_block is full and the value is
 * still empty, the value first grows to all the free room of the inode body
 * (ext4_update_inline_dir()), and when neither region has room the directory becomes a one-block
 * directory (ext4_convert_inline_data_nolock()) and the entry goes there through the
 * {@link DirChanges} that {@link BlockConversion#mapFirstBlock} returns.
 *
 * <p>Works on the caller's copy of the directory inode, which the caller writes; like
 * {@code DirectoryWriter}, one writer serves one directory while the caller holds its write lock.
 * Inline entries carry no checksum: the inode's covers them.
 */
public final class InlineDirectoryWriter implements DirChanges {
    /** EXT4_INLINE_DOTDOT_SIZE: the parent inode number at the start of i_block. */
    private static final int PARENT_SIZE = InlineDirectory.PARENT_SIZE;

    /** What the directory's owner does when the directory leaves the inode. */
    public interface BlockConversion {
        /** Allocates the block that becomes logical block 0; nothing has changed yet when this fails (ENOSPC). */
        long allocateFirstBlock() throws Ext4Exception;

        /**
         * The inline data is gone from the inode copy (i_block holds an empty extent root, or an
         * empty block map without the extents feature) and block {@code pblk} holds the entries:
         * maps logical block 0 there and returns the writer of the one-block directory.
         */
        DirChanges mapFirstBlock(long pblk) throws Ext4Exception;
    }

    private final BufferCache cache;
    private final long ino;
    private final Inode copy;
    private final DirFormat fmt;
    private final int inodeSeed;
    private final boolean extentsFeature;
    private final BlockConversion conversion;
    private final Where whereIBlock;
    private final Where whereXattr;
    /** The block directory this one became, which takes every later change. */
    private DirChanges converted;

    /**
     * @param copy           the directory inode being changed, with EXT4_INLINE_DATA_FL
     * @param inodeSeed      crc32c(fs seed, ino, generation) for the block it may become; 0 without metadata_csum
     * @param extentsFeature the filesystem has extents: a converted directory gets an extent tree
     */
    public InlineDirectoryWriter(BufferCache cache, long ino, Inode copy, DirFormat fmt, int inodeSeed, boolean extentsFeature,
                                 BlockConversion conversion) {
        this.cache = cache;
        this.ino = ino;
        this.copy = copy;
        this.fmt = fmt;
        this.inodeSeed = inodeSeed;
        this.extentsFeature = extentsFeature;
        this.conversion = conversion;
        this.whereIBlock = new Where(ino, false);
        this.whereXattr = new Where(ino, true);
    }

    /**
     * ext4_try_create_inline_dir(): makes a new directory inode inline: the parent, one empty
     * entry over the remaining 56 bytes, an empty system.data and i_size 60. Returns false, with
     * the inode unchanged, when the inode body has no room for system.data; the caller then makes
     * a block directory. The caller sets i_links_count.
     */
    public static boolean initNew(Inode in, long ino, long parentIno, DirFormat fmt) throws Ext4Exception {
        if (InlineData.maxSize(in, ino) < InlineData.MIN_SIZE) {
            return false;
        }
        InlineData.create(in, ino, InlineData.MIN_SIZE);
        ByteBuffer ib = in.iBlock();
        ib.putInt(0, (int) parentIno);
        DirEntry.setInode(ib, PARENT_SIZE, 0);
        DirEntry.setRecLen(ib, PARENT_SIZE, InlineData.MIN_SIZE - PARENT_SIZE, fmt.blockSize());
        in.setSize(InlineData.MIN_SIZE);
        return true;
    }

    /** Names a region in messages; built only when one is needed. */
    private record Where(long ino, boolean inXattr) {
        @Override
        public String toString() {
            return "inline directory inode " + ino + (inXattr ? " (system.data)" : " (i_block)");
        }
    }

    private Where where(boolean inXattr) {
        return inXattr ? whereXattr : whereIBlock;
    }

    @Override
    public DirEntries reader() {
        if (converted != null) {
            return converted.reader();
        }
        return new DirEntries() {
            @Override
            public long lookup(byte[] name) throws Ext4Exception {
                return current().lookup(name);
            }

            @Override
            public void readdir(long position, DirSink sink) throws Ext4Exception {
                current().readdir(position, sink);
            }
        };
    }

    /** A reader over the inline entries as the copy holds them now. */
    private InlineDirectory current() throws Ext4Exception {
        return new InlineDirectory(ino, copy.iBlock(), InlineData.value(copy, ino), fmt);
    }

    // ---- add ----

    @Override
    public void add(byte[] name, long target, int fileType) throws Ext4Exception {
        if (converted != null) {
            converted.add(name, target, fileType);
            return;
        }
        Names.check(name);
        if (Names.isDotOrDotDot(name) || reader().lookup(name) != 0) {
            throw new Ext4Exception(Errno.EEXIST, "inline directory inode " + ino + ": the name exists");
        }
        DirentRegion inIBlock = region(copy.iBlock(), false, InlineData.MIN_SIZE);
        int off = inIBlock.findSlot(name);
        if (off >= 0) {
            inIBlock.insert(off, name, target, fileType);
            return;
        }
        byte[] value = InlineData.value(copy, ino);
        if (value.length == 0) {
            value = growIntoXattr();
        }
        if (value.length > 0) {
            DirentRegion inXattr = region(ByteBuffer.wrap(value).order(ByteOrder.LITTLE_ENDIAN), true, value.length);
            off = inXattr.findSlot(name);
            if (off >= 0) {
                inXattr.insert(off, name, target, fileType);
                InlineData.setValue(copy, ino, value);
                return;
            }
        }
        convert().add(name, target, fileType);
    }

    /**
     * ext4_update_inline_dir(): the empty system.data grows to the largest value the inode body
     * can hold, one empty entry over all of it, and i_size with it; unchanged (an empty value)
     * when that would not hold more than the smallest entry.
     */
    private byte[] growIntoXattr() throws Ext4Exception {
        int newSize = InlineData.maxValueSize(copy, ino);
        if (newSize <= DirEntry.minRecLen(1)) {
            return new byte[0];
        }
        byte[] value = new byte[newSize];
        ByteBuffer vb = ByteBuffer.wrap(value).order(ByteOrder.LITTLE_ENDIAN);
        DirEntry.setInode(vb, 0, 0);
        DirEntry.setRecLen(vb, 0, newSize, fmt.blockSize());
        InlineData.setValue(copy, ino, value);
        copy.setSize(InlineData.MIN_SIZE + newSize);
        return value;
    }

    /**
     * The entries of i_block (after the parent number) or of the value: one region each, as
     * ext4_add_dirent_to_inline() and ext4_delete_inline_entry() treat them.
     */
    private DirentRegion region(ByteBuffer b, boolean inXattr, int end) {
        return new DirentRegion(b, inXattr ? 0 : PARENT_SIZE, end, fmt, where(inXattr));
    }

    // ---- conversion to a block directory ----

    /**
     * ext4_convert_inline_data_nolock() with ext4_finish_convert_inline_dir(): "." and ".." (with
     * its minimal rec_len) open a new block, the inline entries follow as they are (i_block's,
     * then the xattr's), the last one reaches to the end of the block (or to the checksum tail),
     * then system.data goes and the block becomes logical block 0, i_size one block.
     */
    private DirChanges convert() throws Ext4Exception {
        ByteBuffer block = blockImage();
        long pblk = conversion.allocateFirstBlock();
        cache.create(pblk, b -> b.put(0, block, 0, fmt.blockSize()));
        InlineData.destroy(copy, ino, extentsFeature);
        copy.setSize(fmt.blockSize());
        converted = conversion.mapFirstBlock(pblk);
        return converted;
    }

    private ByteBuffer blockImage() throws Ext4Exception {
        byte[] inline = InlineData.read(copy, ino);
        ByteBuffer in = ByteBuffer.wrap(inline).order(ByteOrder.LITTLE_ENDIAN);
        // the entries must be sound before anything moves (ext4_check_all_de())
        walkRegion(in, PARENT_SIZE, InlineData.MIN_SIZE, false);
        walkRegion(in, InlineData.MIN_SIZE, inline.length, true);
        int bs = fmt.blockSize();
        int csumSize = fmt.metadataCsum() ? DirEntry.TAIL_SIZE : 0;
        int dot = DirEntry.minRecLen(1);
        int header = dot + DirEntry.minRecLen(2);
        int end = header + inline.length - PARENT_SIZE;
        if (end > bs - csumSize) {
            throw Ext4Exception.corrupted(where(true) + ": " + inline.length + " bytes of inline entries do not fit in a block of " + bs);
        }
        ByteBuffer b = ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN);
        DirEntry.setInode(b, 0, ino);
        DirEntry.setRecLen(b, 0, dot, bs);
        DirEntry.setNameLenAndType(b, 0, 1, DirEntry.FT_DIR, fmt.fileType());
        DirEntry.setName(b, 0, new byte[] {'.'});
        DirEntry.setInode(b, dot, in.getInt(0) & 0xFFFFFFFFL);
        DirEntry.setRecLen(b, dot, header - dot, bs);
        DirEntry.setNameLenAndType(b, dot, 2, DirEntry.FT_DIR, fmt.fileType());
        DirEntry.setName(b, dot, new byte[] {'.', '.'});
        b.put(header, inline, PARENT_SIZE, inline.length - PARENT_SIZE);
        int last = dot;
        for (int off = header; off < end; off += DirEntry.recLen(b, off, bs)) {
            last = off;
        }
        DirEntry.setRecLen(b, last, bs - csumSize - last, bs);
        if (csumSize != 0) {
            DirEntry.initTail(b, bs);
            BlockDirectory.sealLeaf(b, fmt, inodeSeed, "directory inode " + ino + " block 0 (from inline data)");
        }
        return b;
    }

    // ---- remove, replace, "..", empty ----

    /** One entry found: its region's bytes (i_block or the value) and where it is. */
    private record Found(ByteBuffer region, byte[] value, DirentRegion entries, int off) {
    }

    /** The live entry named {@code name}, in i_block or in the value; null when absent. */
    private Found find(byte[] name) throws Ext4Exception {
        ByteBuffer ib = copy.iBlock();
        Found f = findIn(ib, null, name, false, InlineData.MIN_SIZE);
        if (f != null) {
            return f;
        }
        byte[] value = InlineData.value(copy, ino);
        return findIn(ByteBuffer.wrap(value).order(ByteOrder.LITTLE_ENDIAN), value, name, true, value.length);
    }

    private Found findIn(ByteBuffer b, byte[] value, byte[] name, boolean inXattr, int end) throws Ext4Exception {
        DirentRegion entries = region(b, inXattr, end);
        int off = entries.find(name);
        return off < 0 ? null : new Found(b, value, entries, off);
    }

    private Found locate(byte[] name) throws Ext4Exception {
        Names.check(name);
        if (Names.isDotOrDotDot(name)) {
            throw new Ext4Exception(Errno.EINVAL, "inline directory inode " + ino + ": '.' and '..' cannot be removed or replaced");
        }
        Found f = find(name);
        if (f == null) {
            throw new Ext4Exception(Errno.ENOENT, "inline directory inode " + ino + ": no such entry");
        }
        return f;
    }

    /** The region of {@code f} is changed: a value is stored back (i_block was changed in place). */
    private void storeRegion(Found f) throws Ext4Exception {
        if (f.value() != null) {
            InlineData.setValue(copy, ino, f.value());
        }
    }

    /**
     * ext4_delete_inline_entry() with ext4_generic_delete_entry(): the entry joins the previous one
     * of its region, or, first in its region, keeps its place with inode 0.
     */
    @Override
    public long remove(byte[] name) throws Ext4Exception {
        if (converted != null) {
            return converted.remove(name);
        }
        Found f = locate(name);
        long old = DirEntry.inode(f.region(), f.off());
        f.entries().delete(f.off(), f.entries().previous(f.off()));
        storeRegion(f);
        return old;
    }

    @Override
    public long replace(byte[] name, long newIno, int fileType) throws Ext4Exception {
        if (converted != null) {
            return converted.replace(name, newIno, fileType);
        }
        Found f = locate(name);
        long old = DirEntry.inode(f.region(), f.off());
        DirEntry.setInode(f.region(), f.off(), newIno);
        DirEntry.setFileType(f.region(), f.off(), fileType, fmt.fileType());
        storeRegion(f);
        return old;
    }

    /** The parent number at the start of i_block. */
    @Override
    public void setDotDot(long parentIno) throws Ext4Exception {
        if (converted != null) {
            converted.setDotDot(parentIno);
            return;
        }
        copy.iBlock().putInt(0, (int) parentIno);
    }

    /** empty_inline_dir(): no live entry in either region. */
    @Override
    public boolean isEmpty() throws Ext4Exception {
        if (converted != null) {
            return converted.isEmpty();
        }
        byte[] inline = InlineData.read(copy, ino);
        ByteBuffer b = ByteBuffer.wrap(inline).order(ByteOrder.LITTLE_ENDIAN);
        return walkRegion(b, PARENT_SIZE, InlineData.MIN_SIZE, false) && walkRegion(b, InlineData.MIN_SIZE, inline.length, true);
    }

    /** Checks every entry of a region; true when none is live. */
    private boolean walkRegion(ByteBuffer b, int start, int end, boolean inXattr) throws Ext4Exception {
        boolean empty = true;
        for (int off = start; off < end; ) {
            int rlen = DirEntryCheck.check(b, off, end, fmt, where(inXattr));
            empty &= DirEntry.inode(b, off) == 0;
            off += rlen;
        }
        return empty;
    }
}

package dev.ext4j.dir;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.dir.BlockDirectory.BadIndex;
import dev.ext4j.dir.BlockDirectory.Frame;
import dev.ext4j.dir.BlockDirectory.Location;
import dev.ext4j.dir.BlockDirectory.Probe;
import dev.ext4j.blockmap.BlockMap;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.DxNode;
import dev.ext4j.io.BufferCache;
import java.lang.System.Logger.Level;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;

/**
 * Changes to a directory kept in blocks, as fs/ext4/namei.c makes them: ext4_add_entry() with
 * add_dirent_to_buf() for linear directories, make_indexed_dir() when the first block fills up,
 * ext4_dx_add_entry() with do_split() and index splits for htrees, ext4_delete_entry(),
 * ext4_setent() for rename over a target, and the ".." update of a moved directory. Checksums are
 * stored as ext4_dirblock_csum_set() and ext4_dx_csum_set() do.
 *
 * <p>One writer serves one directory for as long as the caller holds that directory's write lock
 * (it is not thread-safe, and it tracks size and index state as they change). Every block is
 * replaced whole through {@link BufferCache#update}, with its checksum, and the steps of one change
 * are ordered so that the tree is usable after each of them: a new block is written before
 * {@link DirectoryGrowth#setSize} makes it part of the directory, an index entry points at a block
 * only after the block holds its entries, and entries leave an old block last (in between, a name
 * can be in two blocks, never in none). Those steps are only safe for a reader whose i_size and
 * EXT4_INDEX_FL are current when it reads the blocks; a reader working from an older copy of the
 * inode can miss the blocks a split just added. Lookup and readdir should therefore hold the
 * directory's read lock, as the kernel holds i_rwsem shared for them.
 *
 * <p>Not for casefolded or encrypted directories (their names hash differently), nor inline ones.
 * There is no journal here: a crash between the block writes of one operation can leave a
 * directory that e2fsck must repair.
 */
public final class DirectoryWriter implements DirChanges {
    private static final System.Logger LOG = System.getLogger("ext4j");

    private final BlockDirectory dir;
    private final BufferCache cache;
    private final DirFormat fmt;
    private final int bs;
    /** Bytes at a leaf's end kept for the checksum tail: 12 with metadata_csum, else 0. */
    private final int csumSize;
    private final int defHashVersion;
    private final DirectoryGrowth growth;
    /** EXT4_INDEX_FL as the inode has it (the directory may still be linear without dir_index). */
    private boolean indexFlag;

    /**
     * @param sizeBytes      the directory's i_size
     * @param indexFlag      EXT4_INDEX_FL is set in the inode
     * @param inodeSeed      crc32c(fs seed, ino, generation); 0 without metadata_csum
     * @param defHashVersion the superblock's s_def_hash_version, used when the directory becomes
     *                       an htree (legacy 0, half_md4 1, tea 2; "unsigned" comes from s_flags)
     * @param growth         the caller's hooks for new blocks, i_size and EXT4_INDEX_FL
     */
    public DirectoryWriter(BufferCache cache, long ino, BlockMap map, long sizeBytes, boolean indexFlag,
                           DirFormat fmt, int inodeSeed, int defHashVersion, DirectoryGrowth growth) throws Ext4Exception {
        this.dir = new BlockDirectory(cache, ino, map, sizeBytes, indexFlag, fmt, inodeSeed);
        this.cache = cache;
        this.fmt = fmt;
        this.bs = fmt.blockSize();
        this.csumSize = fmt.metadataCsum() ? DirEntry.TAIL_SIZE : 0;
        this.defHashVersion = defHashVersion;
        this.growth = growth;
        this.indexFlag = indexFlag;
    }

    /** The directory's size now, in bytes (it grows as blocks are added). */
    public long sizeBytes() {
        return dir.blocks() * bs;
    }

    /** True when the directory is an htree now (it may have become one during {@link #add}). */
    public boolean indexed() {
        return dir.indexed();
    }

    /** A reader over the directory as this writer sees it (the same blocks, size and index state). */
    public DirEntries reader() {
        return dir;
    }

    // ---- add ----

    /**
     * ext4_add_entry(): adds {@code name} for inode {@code ino}.
     *
     * @param fileType the dirent file_type (DirEntry.FT_*), stored only with the filetype feature
     * @throws Ext4Exception EEXIST when the name is taken ("." and ".." always are), ENAMETOOLONG
     *                       past 255 bytes, EINVAL for an empty name or one with '/' or NUL,
     *                       ENOSPC when the index is full (two levels without large_dir, three with
     *                       it) or the directory would pass its size limit, EUCLEAN or EBADMSG on
     *                       corruption, and whatever the growth hooks throw
     */
    public void add(byte[] name, long ino, int fileType) throws Ext4Exception {
        if (dir.find(name) != null) {
            throw new Ext4Exception(Errno.EEXIST, "directory inode " + dir.ino() + ": '" + Names.printable(name) + "' exists");
        }
        addNew(name, ino, fileType);
    }

    @Override
    public void addNew(byte[] name, long ino, int fileType) throws Ext4Exception {
        Names.check(name);
        checkTarget(ino, fileType);
        if (Names.isDotOrDotDot(name)) {
            throw new Ext4Exception(Errno.EEXIST, "directory inode " + dir.ino() + ": '" + Names.printable(name) + "' exists");
        }
        boolean dxFallback = false;
        if (dir.indexed()) {
            try {
                dxAdd(name, ino, fileType);
                updateDxFlag();
                return;
            } catch (BadIndex e) {
                if (fmt.metadataCsum()) {
                    throw Ext4Exception.corrupted("directory inode " + dir.ino() + " has a corrupted htree index ("
                            + e.getMessage() + "); run e2fsck -D");
                }
                LOG.log(Level.WARNING, "directory inode {0}: htree index unusable ({1}); dropping the index and adding linearly, run e2fsck -D",
                        dir.ino(), e.getMessage());
                dir.setIndexed(false);
                growth.setIndexed(false);
                indexFlag = false;
                dxFallback = true;
            }
        }
        linearAdd(name, ino, fileType, dxFallback);
        updateDxFlag();
    }

    /** ext4_update_dx_flag(): EXT4_INDEX_FL goes away when the filesystem has no dir_index. */
    private void updateDxFlag() throws Ext4Exception {
        if (indexFlag && !fmt.dirIndex()) {
            growth.setIndexed(false);
            indexFlag = false;
        }
    }

    /** The linear part of ext4_add_entry(): first block with room, else make_indexed_dir() or a new block. */
    private void linearAdd(byte[] name, long ino, int fileType, boolean dxFallback) throws Ext4Exception {
        long blocks = dir.blocks();
        for (long lblk = 0; lblk < blocks; lblk++) {
            long pblk = dir.physical(lblk);
            if (pblk == 0) {
                // a hole in a linear directory: ext4_bread(CREATE) fills it
                long p = allocate(lblk);
                ByteBuffer nb = emptyLeaf();
                leaf(nb, lblk).insert(0, name, ino, fileType);
                sealLeaf(nb, lblk);
                create(p, nb);
                return;
            }
            BlockDirectory.Read r = dir.read(lblk, pblk);
            if (insertIfRoom(r, lblk, pblk, name, ino, fileType)) {
                return;
            }
            if (blocks == 1 && !dxFallback && fmt.dirIndex()) {
                makeIndexedDir(r.buf(), pblk, name, ino, fileType);
                return;
            }
        }
        long lblk = blocks;
        long p = allocate(lblk);
        ByteBuffer nb = emptyLeaf();
        leaf(nb, lblk).insert(0, name, ino, fileType);
        sealLeaf(nb, lblk);
        create(p, nb);
        grow(lblk + 1);
    }

    /**
     * make_indexed_dir(): block 0 becomes the dx_root, its entries after ".." move to a new block 1,
     * which do_split() then halves by hash into blocks 1 and 2, and the name goes into its half.
     */
    private void makeIndexedDir(ByteBuffer block0, long pblk0, byte[] name, long ino, int fileType) throws Ext4Exception {
        if (defHashVersion < DxHash.LEGACY || defHashVersion > DxHash.TEA) {
            throw Ext4Exception.corrupted("superblock: s_def_hash_version " + defHashVersion + " is not legacy, half_md4 or tea");
        }
        ByteBuffer root = copyOf(block0);
        int dotdot = checkDots(root);
        if (dotdot != DirEntry.minRecLen(1)) {
            throw Ext4Exception.corrupted(dir.where(0) + ": '.' has rec_len " + dotdot + " (expected 12), cannot index");
        }
        int end = bs - csumSize;
        int de = dotdot + DirEntry.recLen(root, dotdot, bs);
        if (de >= end) {
            throw Ext4Exception.corrupted(dir.where(0) + ": invalid rec_len for '..'");
        }
        int len = end - de;

        long p1 = allocate(1);
        ByteBuffer d1 = zeroBlock();
        d1.put(0, root, de, len);
        // everything after ".." goes: dx_root_info and the entries take its place
        zero(root, dotdot + DirEntry.minRecLen(2), end);
        int last = 0;
        Object where = dir.where(0);
        for (int off = 0; off < len; ) {
            int rl = DirEntryCheck.check(d1, off, len, fmt, where);
            last = off;
            off += rl;
        }
        DirEntry.setRecLen(d1, last, end - last, bs);
        if (csumSize != 0) {
            DirEntry.initTail(d1, bs);
        }

        DirEntry.setRecLen(root, dotdot, bs - dotdot, bs);
        DxNode rn = DxNode.root(root);
        rn.initRootInfo(defHashVersion);
        rn.setLimit(DxNode.expectedLimit(bs, DxNode.ROOT_ENTRIES, fmt.metadataCsum()));
        rn.setCount(1);
        rn.setBlock(0, 1);
        if (csumSize != 0) {
            root.putLong(rn.tailOffset(), 0);
        }
        int version = dir.effectiveHashVersion(defHashVersion);
        int hash = dir.hash(name, 0, name.length, version);
        Frame frame = new Frame(0, pblk0, root, rn, 0);

        Split s;
        try {
            s = doSplit(d1, 1, frame, hash, version, 2, name, ino, fileType);
        } catch (Ext4Exception e) {
            if (e.errno() != Errno.ENOSPC) {
                throw e;
            }
            // as make_indexed_dir() on a failed do_split(): keep what is done, an index over
            // one leaf (block 1, which has the old entries), so block 1 is not left dangling
            sealLeaf(d1, 1);
            create(p1, d1);
            grow(2);
            dir.setIndexed(true);
            growth.setIndexed(true);
            indexFlag = true;
            sealNode(frame);
            update(pblk0, root);
            throw e;
        }
        create(p1, d1);
        create(s.pblk, s.data);
        grow(3);
        // the flag first: a reader that sees it with the old block 0 falls back to a linear scan
        dir.setIndexed(true);
        growth.setIndexed(true);
        indexFlag = true;
        sealNode(frame);
        update(pblk0, root);
    }

    /** ext4_dx_add_entry(): dx_probe() to the leaf; when full, split it, splitting or deepening the index first if needed. */
    private void dxAdd(byte[] name, long ino, int fileType) throws Ext4Exception, BadIndex {
        int maxLevels = fmt.largeDir() ? 3 : 2;
        while (true) {
            Probe p = dir.probe(name);
            Frame[] frames = p.frames();
            Frame frame = p.last();
            long leaf = frame.node.block(frame.at);
            if (leaf == 0 || leaf >= dir.blocks()) {
                throw new BadIndex("entry points to block " + leaf + " (directory has " + dir.blocks() + ")");
            }
            long leafPblk = dir.physical(leaf);
            if (leafPblk == 0) {
                throw Ext4Exception.corrupted(dir.where(leaf) + ": directory hole found for htree leaf block");
            }
            BlockDirectory.Read lr = dir.read(leaf, leafPblk);
            ByteBuffer lb = lr.buf();
            if (insertIfRoom(lr, leaf, leafPblk, name, ino, fileType)) {
                return;
            }
            if (frame.node.count() == frame.node.limit()) {
                int levels = frames.length;
                int fi = levels - 1;
                boolean addLevel = true;
                boolean restart = false;
                while (fi > 0) {
                    if (frames[fi - 1].node.count() < frames[fi - 1].node.limit()) {
                        addLevel = false;
                        break;
                    }
                    fi--;
                    restart = true;
                }
                if (addLevel && levels == maxLevels) {
                    throw new Ext4Exception(Errno.ENOSPC, "directory inode " + dir.ino() + ": index full, reached max htree level "
                            + levels + (fmt.largeDir() ? "" : " (the large_dir feature is not enabled)"));
                }
                if (addLevel) {
                    addLevel(frames[0]);
                    continue;
                }
                Frame cont = splitIndex(frames[fi - 1], frames[fi]);
                if (restart) {
                    continue;
                }
                frame = cont;
            }
            makeWritable(frame);
            ByteBuffer d1 = copyOf(lb);
            long newLblk = dir.blocks();
            Split s = doSplit(d1, leaf, frame, p.hash(), p.hashVersion(), newLblk, name, ino, fileType);
            create(s.pblk, s.data);
            grow(newLblk + 1);
            sealNode(frame);
            update(frame.pblk, frame.buf);
            update(leafPblk, d1);
            return;
        }
    }

    /**
     * The index-split half of ext4_dx_add_entry(): the upper half of a full node's entries moves to
     * a new node, which the parent learns of; returns the frame (old or new node) that now covers
     * the entry taken.
     */
    private Frame splitIndex(Frame parent, Frame frame) throws Ext4Exception {
        makeWritable(parent);
        makeWritable(frame);
        DxNode n1 = frame.node;
        int icount = n1.count();
        int icount1 = icount / 2;
        int icount2 = icount - icount1;
        int hash2 = n1.hash(icount1);
        long newLblk = dir.blocks();
        long p2 = allocate(newLblk);
        ByteBuffer d2 = newIndexNode();
        int from = n1.entriesOffset() + icount1 * DxNode.ENTRY_SIZE;
        d2.put(DxNode.NODE_ENTRIES, frame.buf, from, icount2 * DxNode.ENTRY_SIZE);
        DxNode n2 = DxNode.node(d2);
        n2.setLimit(DxNode.expectedLimit(bs, DxNode.NODE_ENTRIES, fmt.metadataCsum()));
        n2.setCount(icount2);
        n1.setCount(icount1);
        zero(frame.buf, from, from + icount2 * DxNode.ENTRY_SIZE);
        Frame cont = frame;
        if (frame.at >= icount1) {
            cont = new Frame(newLblk, p2, d2, n2, frame.at - icount1);
        }
        dxInsertBlock(parent, hash2, newLblk);
        sealNode(n2);
        sealNode(frame);
        sealNode(parent);
        create(p2, d2);
        grow(newLblk + 1);
        update(parent.pblk, parent.buf);
        update(frame.pblk, frame.buf);
        return cont;
    }

    /** The add-level half of ext4_dx_add_entry(): the root's entries move to a new node, the root points at it alone. */
    private void addLevel(Frame root) throws Ext4Exception {
        makeWritable(root);
        DxNode rn = root.node;
        int icount = rn.count();
        long newLblk = dir.blocks();
        long p2 = allocate(newLblk);
        ByteBuffer d2 = newIndexNode();
        d2.put(DxNode.NODE_ENTRIES, root.buf, DxNode.ROOT_ENTRIES, icount * DxNode.ENTRY_SIZE);
        DxNode n2 = DxNode.node(d2);
        n2.setLimit(DxNode.expectedLimit(bs, DxNode.NODE_ENTRIES, fmt.metadataCsum()));
        rn.setCount(1);
        rn.setBlock(0, newLblk);
        zero(root.buf, DxNode.ROOT_ENTRIES + DxNode.ENTRY_SIZE, DxNode.ROOT_ENTRIES + icount * DxNode.ENTRY_SIZE);
        rn.setIndirectLevels(rn.indirectLevels() + 1);
        sealNode(n2);
        sealNode(root);
        create(p2, d2);
        grow(newLblk + 1);
        update(root.pblk, root.buf);
    }

    /** dx_insert_block(): a new (hash, block) right after the frame's current entry. */
    private static void dxInsertBlock(Frame f, int hash, long block) {
        DxNode n = f.node;
        int count = n.count();
        if (count >= n.limit() || f.at >= count) {
            throw new IllegalStateException("dx_insert_block: count " + count + ", limit " + n.limit() + ", at " + f.at);
        }
        int base = n.entriesOffset();
        for (int i = count - 1; i > f.at; i--) {
            f.buf.putLong(base + (i + 1) * DxNode.ENTRY_SIZE, f.buf.getLong(base + i * DxNode.ENTRY_SIZE));
        }
        n.setHash(f.at + 1, hash);
        n.setBlock(f.at + 1, block);
        n.setCount(count + 1);
    }

    /** A new leaf block and its physical block, from do_split(). */
    private record Split(long pblk, ByteBuffer data) {
    }

    /**
     * do_split(): sorts the live entries of leaf {@code d1} by hash (dx_make_map(), dx_sort_map()),
     * moves the upper part to a new block so neither is over half full, inserts the name into the
     * half its hash belongs to, and links the new block into {@code frame} with the split hash (+1,
     * the collision bit, when the hash continues from the lower block). Changes {@code d1} and
     * {@code frame} in memory; the caller writes them.
     */
    private Split doSplit(ByteBuffer d1, long lblk1, Frame frame, int hash, int version, long newLblk,
                          byte[] name, long ino, int fileType) throws Ext4Exception {
        int end = bs - csumSize;
        boolean ft = fmt.fileType();
        // dx_make_map() fills the map from its end, so it is in reverse block order before sorting
        List<int[]> inOrder = new ArrayList<>();
        Object where = dir.where(lblk1);
        for (int off = 0; off < end; ) {
            int rl = DirEntryCheck.check(d1, off, end, fmt, where);
            int nl = DirEntry.nameLen(d1, off, ft);
            if (nl != 0 && DirEntry.inode(d1, off) != 0) {
                inOrder.add(new int[] {dir.hash(DirEntry.name(d1, off, nl), 0, nl, version), off, rl});
            }
            off += rl;
        }
        int count = inOrder.size();
        if (count == 0) {
            throw Ext4Exception.corrupted(dir.where(lblk1) + ": leaf to split has no live entries");
        }
        int[] mh = new int[count];
        int[] mo = new int[count];
        int[] ms = new int[count];
        for (int k = 0; k < count; k++) {
            int[] e = inOrder.get(count - 1 - k);
            mh[k] = e[0];
            mo[k] = e[1];
            ms[k] = e[2];
        }
        sortMap(mh, mo, ms);
        // neither block over half full
        int size = 0;
        int move = 0;
        int i;
        for (i = count - 1; i >= 0; i--) {
            if (size + ms[i] / 2 > bs / 2) {
                break;
            }
            size += ms[i];
            move++;
        }
        // all entries fit in half a block (the loop ran out): split by count instead. "i >= 0" as
        // since commit 94824ac9a8aa ("ext4: fix off-by-one error in do_split", 6.15 and stable);
        // older kernels had "i > 0", which split by count also when the first entry broke the loop
        int split = i >= 0 ? count - move : count / 2;
        int hash2 = mh[split];
        int continued = split > 0 && hash2 == mh[split - 1] ? 1 : 0;

        long p2 = allocate(newLblk);
        ByteBuffer d2 = zeroBlock();
        // dx_move_dirents()
        int to = 0;
        int rec = 0;
        for (int k = split; k < count; k++) {
            int de = mo[k];
            rec = DirEntry.minRecLen(DirEntry.nameLen(d1, de, ft));
            d2.put(to, d1, de, rec);
            DirEntry.setRecLen(d2, to, rec, bs);
            DirEntry.setInode(d1, de, 0);
            zero(d1, de + 6, de + DirEntry.recLen(d1, de, bs));
            to += rec;
        }
        int de2 = to - rec;
        int de1 = packDirents(d1, end);
        DirEntry.setRecLen(d1, de1, end - de1, bs);
        zeroSlack(d1, de1, end);
        DirEntry.setRecLen(d2, de2, end - de2, bs);
        if (csumSize != 0) {
            DirEntry.initTail(d1, bs);
            DirEntry.initTail(d2, bs);
        }
        // which block gets the new entry: add_dirent_to_buf() at the last entry of that half
        boolean upper = Integer.compareUnsigned(hash, hash2) >= 0;
        DirentRegion target = leaf(upper ? d2 : d1, upper ? newLblk : lblk1);
        int at = upper ? de2 : de1;
        int room = target.room(at);
        if (room < DirEntry.minRecLen(name.length)) {
            throw new Ext4Exception(Errno.ENOSPC, dir.where(upper ? newLblk : lblk1) + ": no room for a "
                    + name.length + "-byte name after splitting the leaf (" + room + " bytes free)");
        }
        target.insert(at, name, ino, fileType);
        sealLeaf(d1, lblk1);
        sealLeaf(d2, newLblk);
        dxInsertBlock(frame, hash2 + continued, newLblk);
        return new Split(p2, d2);
    }

    /** dx_sort_map(): comb sort, then bubble sort, by unsigned hash; kept as the kernel has it so ties land alike. */
    static void sortMap(int[] h, int[] o, int[] s) {
        int count = h.length;
        int top = count - 1;
        while (count > 2) {
            count = count * 10 / 13;
            if (count == 9 || count == 10) {
                count = 11;
            }
            for (int p = top, q = p - count; q >= 0; p--, q--) {
                if (Integer.compareUnsigned(h[p], h[q]) < 0) {
                    swap(h, o, s, p, q);
                }
            }
        }
        boolean more;
        do {
            more = false;
            for (int q = top - 1; q >= 0; q--) {
                if (Integer.compareUnsigned(h[q + 1], h[q]) >= 0) {
                    continue;
                }
                swap(h, o, s, q + 1, q);
                more = true;
            }
        } while (more);
    }

    private static void swap(int[] h, int[] o, int[] s, int a, int b) {
        int t = h[a]; h[a] = h[b]; h[b] = t;
        t = o[a]; o[a] = o[b]; o[b] = t;
        t = s[a]; s[a] = s[b]; s[b] = t;
    }

    /** dx_pack_dirents(): live entries slide to the block start at their minimal size; returns the last one's offset. */
    private int packDirents(ByteBuffer b, int end) {
        boolean ft = fmt.fileType();
        int to = 0;
        int prev = 0;
        for (int de = 0; de < end; ) {
            int rl = DirEntry.recLen(b, de, bs);
            int nl = DirEntry.nameLen(b, de, ft);
            if (DirEntry.inode(b, de) != 0 && nl != 0) {
                int rec = DirEntry.minRecLen(nl);
                if (de > to) {
                    byte[] moved = new byte[rec];
                    b.get(de, moved);
                    b.put(to, moved);
                }
                DirEntry.setRecLen(b, to, rec, bs);
                prev = to;
                to += rec;
            }
            de += rl;
        }
        return prev;
    }

    // ---- remove, replace, "..", empty ----

    /**
     * ext4_delete_entry(): removes {@code name} and returns the inode it pointed to. The entry
     * joins the previous one in its block (whose rec_len grows), or, first in its block, keeps its
     * place with inode 0. Htree index entries stay as they are, as in the kernel.
     *
     * @throws Ext4Exception ENOENT when absent, EINVAL for "." and "..", ENAMETOOLONG past 255 bytes
     */
    public long remove(byte[] name) throws Ext4Exception {
        Location loc = locate(name);
        BlockDirectory.Read r = dir.read(loc.lblk(), loc.pblk());
        ByteBuffer b = copyOf(r.buf());
        DirentRegion entries = leaf(b, loc.lblk(), r.sound());
        entries.delete(loc.offset(), entries.previous(loc.offset()));
        sealLeaf(b, loc.lblk());
        updateLeaf(loc.pblk(), loc.lblk(), b, r.sound());
        return loc.ino();
    }

    /**
     * ext4_setent(): points the existing entry {@code name} at {@code newIno} (rename over a target)
     * and returns the inode it pointed to before.
     *
     * @throws Ext4Exception ENOENT when absent, EINVAL for "." and ".."
     */
    public long replace(byte[] name, long newIno, int fileType) throws Ext4Exception {
        checkTarget(newIno, fileType);
        Location loc = locate(name);
        ByteBuffer b = copyOf(dir.block(loc.lblk(), loc.pblk()));
        DirEntry.setInode(b, loc.offset(), newIno);
        DirEntry.setFileType(b, loc.offset(), fileType, fmt.fileType());
        sealLeaf(b, loc.lblk());
        update(loc.pblk(), b);
        return loc.ino();
    }

    /** Points ".." at {@code parentIno} (a directory moved to another parent); in an htree it is the root's second fake entry. */
    public void setDotDot(long parentIno) throws Ext4Exception {
        checkTarget(parentIno, DirEntry.FT_DIR);
        long p0 = dir.physical(0);
        if (p0 == 0) {
            throw Ext4Exception.corrupted(dir.where(0) + ": the first directory block is a hole");
        }
        ByteBuffer b = copyOf(dir.block(0, p0));
        int dotdot = checkDots(b);
        DirEntry.setInode(b, dotdot, parentIno);
        dir.seal(b, 0);
        update(p0, b);
    }

    /** ext4_empty_dir(): true when only "." and ".." are left. */
    public boolean isEmpty() throws Ext4Exception {
        return isEmpty(dir);
    }

    static boolean isEmpty(BlockDirectory dir) throws Ext4Exception {
        ByteBuffer b0 = dir.block(0);
        if (b0 == null) {
            throw Ext4Exception.corrupted(dir.where(0) + ": the first directory block is a hole");
        }
        int dotdot = checkDots(dir, b0);
        for (long lblk = 0; lblk < dir.blocks(); lblk++) {
            ByteBuffer b = lblk == 0 ? b0 : dir.block(lblk);
            if (b == null) {
                continue;
            }
            int end = dir.entriesEnd(b, lblk);
            Object where = dir.where(lblk);
            for (int off = 0; off < end; ) {
                int rl = DirEntryCheck.check(b, off, end, dir.fmt(), where);
                if (DirEntry.inode(b, off) != 0 && !(lblk == 0 && (off == 0 || off == dotdot))) {
                    return false;
                }
                off += rl;
            }
        }
        return true;
    }

    /**
     * ext4_init_new_dir(): writes the first block of a new directory at {@code pblk}: "." for
     * {@code selfIno}, ".." for {@code parentIno} spanning the rest, and the checksum tail with
     * metadata_csum. The caller allocates and maps the block and sets i_size to one block and
     * i_links_count to 2.
     *
     * @param inodeSeed the new directory's crc32c(fs seed, ino, generation); 0 without metadata_csum
     */
    public static void initNew(BufferCache cache, long pblk, long selfIno, long parentIno, DirFormat fmt, int inodeSeed)
            throws Ext4Exception {
        int bs = fmt.blockSize();
        int csum = fmt.metadataCsum() ? DirEntry.TAIL_SIZE : 0;
        int dot = DirEntry.minRecLen(1);
        cache.create(pblk, b -> {
            DirEntry.setInode(b, 0, selfIno);
            DirEntry.setRecLen(b, 0, dot, bs);
            DirEntry.setNameLenAndType(b, 0, 1, DirEntry.FT_DIR, fmt.fileType());
            DirEntry.setName(b, 0, new byte[] {'.'});
            DirEntry.setInode(b, dot, parentIno);
            DirEntry.setRecLen(b, dot, bs - dot - csum, bs);
            DirEntry.setNameLenAndType(b, dot, 2, DirEntry.FT_DIR, fmt.fileType());
            DirEntry.setName(b, dot, new byte[] {'.', '.'});
            if (csum != 0) {
                DirEntry.initTail(b, bs);
                BlockDirectory.sealLeaf(b, fmt, inodeSeed, "new directory inode " + selfIno + " block 0");
            }
        });
    }

    // ---- helpers ----

    /** The entry for a name that must exist and may not be "." or "..". */
    private Location locate(byte[] name) throws Ext4Exception {
        Names.check(name);
        if (Names.isDotOrDotDot(name)) {
            throw new Ext4Exception(Errno.EINVAL, "directory inode " + dir.ino() + ": '" + Names.printable(name) + "' cannot be removed or replaced");
        }
        Location loc = dir.find(name);
        if (loc == null) {
            throw new Ext4Exception(Errno.ENOENT, "directory inode " + dir.ino() + ": no entry '" + Names.printable(name) + "'");
        }
        return loc;
    }

    /** add_dirent_to_buf(): puts the entry into leaf {@code b} if it has room; false otherwise. */
    private boolean insertIfRoom(BlockDirectory.Read r, long lblk, long pblk, byte[] name, long ino, int fileType)
            throws Ext4Exception {
        int off = leaf(r.buf(), lblk, r.sound()).findSlot(name);
        if (off < 0) {
            return false;
        }
        ByteBuffer c = copyOf(r.buf());
        leaf(c, lblk).insert(off, name, ino, fileType);
        sealLeaf(c, lblk);
        updateLeaf(pblk, lblk, c, r.sound());
        return true;
    }

    /** The entry area of leaf block {@code lblk}: the whole block but the checksum tail. */
    private DirentRegion leaf(ByteBuffer b, long lblk) {
        return leaf(b, lblk, false);
    }

    /** @param sound each entry is known to pass DirEntryCheck ({@link BlockDirectory#read}) */
    private DirentRegion leaf(ByteBuffer b, long lblk, boolean sound) {
        return new DirentRegion(b, 0, bs - csumSize, fmt, dir.where(lblk), sound);
    }

    /** Checks "." (this inode) at 0 and ".." right after it, as ext4_get_first_dir_block(); returns the offset of "..". */
    private int checkDots(ByteBuffer b) throws Ext4Exception {
        return checkDots(dir, b);
    }

    private static int checkDots(BlockDirectory dir, ByteBuffer b) throws Ext4Exception {
        DirFormat fmt = dir.fmt();
        int bs = fmt.blockSize();
        Object where = dir.where(0);
        int rl = DirEntryCheck.check(b, 0, bs, fmt, where);
        if (DirEntry.inode(b, 0) != dir.ino() || !DirEntry.nameEquals(b, 0, DirEntry.nameLen(b, 0, fmt.fileType()), new byte[] {'.'})) {
            throw Ext4Exception.corrupted(where + ": directory missing '.' (found inode " + DirEntry.inode(b, 0) + ")");
        }
        DirEntryCheck.check(b, rl, bs, fmt, where);
        if (DirEntry.inode(b, rl) == 0 || !DirEntry.nameEquals(b, rl, DirEntry.nameLen(b, rl, fmt.fileType()), new byte[] {'.', '.'})) {
            throw Ext4Exception.corrupted(where + ": directory missing '..' at " + rl);
        }
        return rl;
    }

    private void checkTarget(long ino, int fileType) {
        if (ino < 1 || ino > fmt.inodesCount()) {
            throw new IllegalArgumentException("inode " + ino + " is out of range (1.." + fmt.inodesCount() + ")");
        }
        if (fileType < DirEntry.FT_UNKNOWN || fileType > DirEntry.FT_SYMLINK) {
            throw new IllegalArgumentException("file type " + fileType + " is not a dirent file_type (0..7)");
        }
    }

    /** ext4_append()'s allocation half: maps {@code lblk}, leaving i_size to {@link #grow}. */
    private long allocate(long lblk) throws Ext4Exception {
        long newSize = (lblk + 1) * bs;
        if (!fmt.largeDir() && newSize > 0xFFFFFFFFL || lblk > 0x0FFFFFFFL) {
            throw new Ext4Exception(Errno.ENOSPC, "directory inode " + dir.ino() + ": cannot grow past " + lblk
                    + " blocks" + (fmt.largeDir() ? "" : " without large_dir"));
        }
        long p = growth.allocateBlock(lblk);
        if (p <= 0) {
            throw new IllegalStateException("DirectoryGrowth.allocateBlock(" + lblk + ") returned block " + p);
        }
        dir.noteAllocated(lblk, p);
        return p;
    }

    /** Makes {@code blocks} blocks part of the directory (i_size), after their contents are written. */
    private void grow(long blocks) throws Ext4Exception {
        if (blocks > dir.blocks()) {
            growth.setSize(blocks * bs);
            dir.setBlocks(blocks);
        }
    }

    private void sealLeaf(ByteBuffer b, long lblk) throws Ext4Exception {
        if (csumSize != 0) {
            BlockDirectory.sealLeaf(b, fmt, dir.inodeSeed(), dir.where(lblk));
        }
    }

    private void sealNode(Frame f) {
        sealNode(f.node);
    }

    private void sealNode(DxNode n) {
        if (csumSize != 0) {
            n.setChecksum(dir.inodeSeed());
        }
    }

    private static void makeWritable(Frame f) {
        if (f.buf.isReadOnly()) {
            f.buf = copyOf(f.buf);
            f.node = f.node.entriesOffset() == DxNode.ROOT_ENTRIES ? DxNode.root(f.buf) : DxNode.node(f.buf);
        }
    }

    private ByteBuffer newIndexNode() {
        ByteBuffer b = zeroBlock();
        DirEntry.setRecLen(b, 0, bs, bs);
        return b;
    }

    /** A fresh leaf: one empty entry over the whole entry area, and the tail with metadata_csum. */
    private ByteBuffer emptyLeaf() {
        ByteBuffer b = zeroBlock();
        DirEntry.setRecLen(b, 0, bs - csumSize, bs);
        if (csumSize != 0) {
            DirEntry.initTail(b, bs);
        }
        return b;
    }

    private ByteBuffer zeroBlock() {
        return ByteBuffer.allocate(bs).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static ByteBuffer copyOf(ByteBuffer view) {
        byte[] a = new byte[view.capacity()];
        view.get(0, a);
        return ByteBuffer.wrap(a).order(ByteOrder.LITTLE_ENDIAN);
    }

    private static void zero(ByteBuffer b, int from, int to) {
        DirentRegion.zero(b, from, to);
    }

    /** Zeroes the bytes after an entry's minimal size up to {@code end} (stale names from moved entries). */
    private void zeroSlack(ByteBuffer b, int off, int end) {
        if (DirEntry.inode(b, off) == 0) {
            b.putShort(off + 6, (short) 0);
            zero(b, off + DirEntry.HEADER_SIZE, end);
        } else {
            zero(b, off + DirEntry.minRecLen(DirEntry.nameLen(b, off, fmt.fileType())), end);
        }
    }

    private void create(long pblk, ByteBuffer data) throws Ext4Exception {
        cache.create(pblk, b -> b.put(0, data, 0, bs));
    }

    private void update(long pblk, ByteBuffer data) throws Ext4Exception {
        cache.create(pblk, b -> b.put(0, data, 0, bs)); // the whole block: nothing of the old one to copy
    }

    /**
     * Writes leaf {@code lblk} after one insert or delete; when it was {@code sound} before
     * ({@link BlockDirectory#read}), the new contents are known sound too and are not checked again.
     */
    private void updateLeaf(long pblk, long lblk, ByteBuffer data, boolean sound) throws Ext4Exception {
        if (sound) {
            cache.changeChecked(pblk, dir.checkOwner(lblk), true, b -> b.put(0, data, 0, bs));
        } else {
            update(pblk, data);
        }
    }
}

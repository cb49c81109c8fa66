package dev.ext4j.dir;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.Ext4Exception;
import dev.ext4j.blockmap.ExtentTree;
import dev.ext4j.blockmap.Mapping;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.DirEntry;
import dev.ext4j.format.DxNode;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;

/**
 * An image made by mkfs.ext4 with an empty directory {@code /d} whose blocks debugfs already
 * allocated (expand_dir), shrunk back to one block, so that {@link DirectoryGrowth} only hands out
 * the next pre-mapped block and writes i_size and EXT4_INDEX_FL into the inode (with its checksum).
 * Target files {@code /f0..} exist for entries to point at; {@link #finish} punches the blocks the
 * directory did not use, fixes the targets' link counts and leaves the image to e2fsck and debugfs.
 */
final class DirFixture implements DirectoryGrowth, AutoCloseable {
    final Path img;
    final String dirPath;
    final int bs;
    final Superblock sb;
    final DirFormat fmt;
    final BufferCache cache;
    final long dirIno;
    final long[] targets;
    final Map<Long, Integer> links = new HashMap<>();
    private final FileBlockDevice dev;
    private final long inodeBlock;
    private final int inodeOff;
    private final int inodeSize;
    private final int csumSeed;
    final int inodeSeed;
    final ExtentTree map;
    final long mappedBlocks;
    long sizeBytes;
    private long nextAlloc;
    boolean indexFlag;
    final List<Boolean> indexCalls = new ArrayList<>();
    private boolean closed;

    /**
     * @param preBlocks directory blocks to allocate beforehand (the directory can grow to 1 + preBlocks)
     * @param extraDebugfs debugfs commands run after mkfs (e.g. "ssv flags 2")
     */
    static DirFixture create(Path work, String name, String sizeSpec, List<String> mkfsArgs, int targets, int preBlocks,
                             String... extraDebugfs) throws Exception {
        return createAt(work, name, sizeSpec, mkfsArgs, targets, preBlocks, "/d", extraDebugfs);
    }

    /** Like {@link #create} with the directory at {@code dirPath} (its parent made by {@code extraDebugfs}). */
    static DirFixture createAt(Path work, String name, String sizeSpec, List<String> mkfsArgs, int targets, int preBlocks,
                               String dirPath, String... extraDebugfs) throws Exception {
        Path img = work.resolve(name + ".img");
        Images.mkfs(img, sizeSpec, mkfsArgs, null);
        List<String> cmds = new ArrayList<>(List.of(extraDebugfs));
        cmds.add("mkdir " + dirPath);
        List<String> paths = new ArrayList<>();
        for (int i = 0; i < targets; i++) {
            cmds.add("write /dev/null /f" + i);
            paths.add("/f" + i);
        }
        Images.debugfsCmds(img, true, cmds);
        return open(img, dirPath, paths, preBlocks);
    }

    /**
     * Opens an image whose directory {@code dirPath} has one block: debugfs first expands it by
     * {@code preBlocks}, then the size goes back to one block.
     */
    static DirFixture open(Path img, String dirPath, List<String> targetPaths, int preBlocks) throws Exception {
        List<String> cmds = new ArrayList<>();
        for (int i = 0; i < preBlocks; i++) {
            cmds.add("expand_dir " + dirPath);
        }
        if (!cmds.isEmpty()) {
            Images.debugfsCmds(img, true, cmds);
        }
        long[] t = new long[targetPaths.size()];
        for (int i = 0; i < t.length; i++) {
            t[i] = Images.inodeOf(img, targetPaths.get(i));
        }
        long ino = Images.inodeOf(img, dirPath);
        FileBlockDevice dev = FileBlockDevice.open(img, false);
        ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
        dev.read(Superblock.OFFSET_IN_IMAGE, raw);
        Superblock sb = new Superblock(raw.flip());
        long off = Images.inodeByteOffset(img, "<" + ino + ">", sb.blockSize());
        return new DirFixture(img, dirPath, dev, sb, ino, off, t, 1 + preBlocks);
    }

    /** The superblock of an image. */
    static Superblock superblock(Path img) throws Exception {
        try (FileBlockDevice dev = FileBlockDevice.open(img, true)) {
            ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
            dev.read(Superblock.OFFSET_IN_IMAGE, raw);
            return new Superblock(raw.flip());
        }
    }

    /**
     * The directory's logical layout, one line per block: an htree node's info and (hash, block)
     * entries up to count, or a leaf's entries (offset, rec_len, inode, name_len, file_type,
     * name), deleted ones included. Slack bytes are left out: the kernel leaves stale bytes there.
     */
    static List<String> layout(Path img, String dirPath) throws Exception {
        long ino = Images.inodeOf(img, dirPath);
        try (FileBlockDevice dev = FileBlockDevice.open(img, true)) {
            ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
            dev.read(Superblock.OFFSET_IN_IMAGE, raw);
            Superblock sb = new Superblock(raw.flip());
            int bs = sb.blockSize();
            boolean csum = sb.has(Feature.METADATA_CSUM);
            boolean ft = sb.has(Feature.FILETYPE);
            BufferCache cache = new BufferCache(dev, bs, sb.blocksCount(), 64L << 20, 0);
            long off = Images.inodeByteOffset(img, "<" + ino + ">", bs);
            byte[] iraw = new byte[sb.inodeSize()];
            cache.get(off / bs).get((int) (off % bs), iraw);
            Inode inode = new Inode(iraw);
            byte[] iblock = new byte[Inode.I_BLOCK_SIZE];
            inode.iBlock().get(0, iblock);
            ExtentTree map = new ExtentTree(cache, ino, ByteBuffer.wrap(iblock).order(ByteOrder.LITTLE_ENDIAN), 0, false);
            boolean indexed = inode.hasFlag(Inode.INDEX_FL);
            Map<Long, Boolean> isNode = new HashMap<>();
            List<String> out = new ArrayList<>();
            out.add("size " + inode.size() + " indexed " + indexed);
            long blocks = inode.size() / bs;
            if (indexed) {
                DxNode root = DxNode.root(cache.get(map.map(0, 1).physical()));
                markNodes(cache, map, root, root.indirectLevels(), isNode);
            }
            for (long lblk = 0; lblk < blocks; lblk++) {
                ByteBuffer b = cache.get(map.map(lblk, 1).physical());
                StringBuilder sbd = new StringBuilder("block " + lblk + ": ");
                if (indexed && (lblk == 0 || isNode.containsKey(lblk))) {
                    DxNode n = lblk == 0 ? DxNode.root(b) : DxNode.node(b);
                    if (lblk == 0) {
                        sbd.append(String.format("root v%d len%d lvl%d '.'=%d '..'=%d ", n.hashVersion(), n.infoLength(),
                                n.indirectLevels(), DirEntry.inode(b, 0), DirEntry.inode(b, 12)));
                    }
                    sbd.append("limit ").append(n.limit()).append(" count ").append(n.count());
                    for (int i = 0; i < n.count(); i++) {
                        sbd.append(String.format(" %08x:%d", n.hash(i), n.block(i)));
                    }
                } else {
                    int end = csum ? bs - DirEntry.TAIL_SIZE : bs;
                    for (int o = 0; o < end; ) {
                        int rl = DirEntry.recLen(b, o, bs);
                        int nl = DirEntry.nameLen(b, o, ft);
                        long e = DirEntry.inode(b, o);
                        sbd.append(String.format("[%d %d %d %d %d %s]", o, rl, e, e == 0 ? 0 : nl,
                                DirEntry.fileType(b, o, ft), e == 0 ? "" : new String(DirEntry.name(b, o, nl),
                                        java.nio.charset.StandardCharsets.ISO_8859_1)));
                        if (rl < 8) {
                            break;
                        }
                        o += rl;
                    }
                }
                out.add(sbd.toString());
            }
            return out;
        }
    }

    private static void markNodes(BufferCache cache, ExtentTree map, DxNode node, int levelsBelow, Map<Long, Boolean> isNode)
            throws Ext4Exception {
        if (levelsBelow == 0) {
            return;
        }
        for (int i = 0; i < node.count(); i++) {
            isNode.put(node.block(i), true);
            markNodes(cache, map, DxNode.node(cache.get(map.map(node.block(i), 1).physical())), levelsBelow - 1, isNode);
        }
    }

    private DirFixture(Path img, String dirPath, FileBlockDevice dev, Superblock sb, long ino, long inodeByteOffset, long[] targets,
                       long mappedBlocks) throws Ext4Exception {
        this.img = img;
        this.dirPath = dirPath;
        this.dev = dev;
        this.sb = sb;
        this.bs = sb.blockSize();
        boolean csum = sb.has(Feature.METADATA_CSUM);
        this.fmt = new DirFormat(bs, sb.has(Feature.FILETYPE), csum, sb.has(Feature.DIR_INDEX), sb.has(Feature.LARGEDIR),
                sb.hashSeed(), (sb.flags() & Superblock.FLAG_UNSIGNED_HASH) != 0, sb.inodesCount());
        this.cache = new BufferCache(dev, bs, sb.blocksCount(), 64L << 20, 0);
        this.dirIno = ino;
        this.targets = targets;
        this.inodeBlock = inodeByteOffset / bs;
        this.inodeOff = (int) (inodeByteOffset % bs);
        this.inodeSize = sb.inodeSize();
        this.csumSeed = csum ? sb.checksumSeed() : 0;
        Inode inode = readInode();
        this.inodeSeed = csum ? Checksums.crc32cLe32(Checksums.crc32cLe32(csumSeed, (int) ino), (int) inode.generation()) : 0;
        byte[] iblock = new byte[Inode.I_BLOCK_SIZE];
        inode.iBlock().get(0, iblock);
        this.map = new ExtentTree(cache, ino, ByteBuffer.wrap(iblock).order(ByteOrder.LITTLE_ENDIAN), inodeSeed, csum);
        this.mappedBlocks = mappedBlocks;
        assertEquals(mappedBlocks * bs, inode.size(), "debugfs expanded the directory");
        this.indexFlag = inode.hasFlag(Inode.INDEX_FL);
        writeInode(i -> i.setSize(bs));
        this.sizeBytes = bs;
        for (long t : targets) {
            links.put(t, 1);
        }
    }

    DirectoryWriter writer() throws Ext4Exception {
        return new DirectoryWriter(cache, dirIno, map, sizeBytes, indexFlag, fmt, inodeSeed, sb.defHashVersion(), this);
    }

    BlockDirectory reader() throws Ext4Exception {
        return new BlockDirectory(cache, dirIno, map, sizeBytes, indexFlag, fmt, inodeSeed);
    }

    Inode readInode() throws Ext4Exception {
        ByteBuffer b = cache.get(inodeBlock);
        byte[] raw = new byte[inodeSize];
        b.get(inodeOff, raw);
        return new Inode(raw);
    }

    private void writeInode(Consumer<Inode> change) throws Ext4Exception {
        cache.update(inodeBlock, b -> {
            byte[] raw = new byte[inodeSize];
            b.get(inodeOff, raw);
            Inode i = new Inode(raw);
            change.accept(i);
            if (fmt.metadataCsum()) {
                i.setChecksum(i.computeChecksum(csumSeed, dirIno));
            }
            b.put(inodeOff, raw);
        });
    }

    @Override
    public long allocateBlock(long lblk) throws Ext4Exception {
        nextAlloc = Math.max(nextAlloc, sizeBytes / bs);
        assertEquals(nextAlloc, lblk, "the directory grows at its end, one block after the other");
        nextAlloc++;
        assertTrue(lblk < mappedBlocks, "pre-mapped directory blocks exhausted at " + lblk + "; raise preBlocks");
        Mapping m = map.map(lblk, 1);
        assertFalse(m.readsAsZeros(), "block " + lblk + " mapped");
        return m.physical();
    }

    @Override
    public void setSize(long bytes) throws Ext4Exception {
        assertTrue(bytes > sizeBytes && bytes % bs == 0, "size grows by whole blocks: " + sizeBytes + " -> " + bytes);
        assertTrue(bytes <= nextAlloc * bs, "size covers only allocated blocks");
        sizeBytes = bytes;
        writeInode(i -> i.setSize(bytes));
    }

    @Override
    public void setIndexed(boolean indexed) throws Ext4Exception {
        indexCalls.add(indexed);
        indexFlag = indexed;
        writeInode(i -> i.setFlags(indexed ? i.flags() | Inode.INDEX_FL : i.flags() & ~Inode.INDEX_FL));
    }

    /** The htree root's indirect_levels, or -1 when the directory is not indexed. */
    int indirectLevels() throws Ext4Exception {
        if (!indexFlag) {
            return -1;
        }
        return DxNode.root(cache.get(map.map(0, 1).physical())).indirectLevels();
    }

    /** Every (hash, block) entry of the index, nodes included, in tree order. */
    List<long[]> indexEntries() throws Ext4Exception {
        List<long[]> out = new ArrayList<>();
        DxNode root = DxNode.root(cache.get(map.map(0, 1).physical()));
        walk(root, root.indirectLevels(), out);
        return out;
    }

    private void walk(DxNode node, int levelsBelow, List<long[]> out) throws Ext4Exception {
        for (int i = 0; i < node.count(); i++) {
            out.add(new long[] {node.hash(i) & 0xFFFFFFFFL, node.block(i), levelsBelow});
            if (levelsBelow > 0) {
                walk(DxNode.node(cache.get(map.map(node.block(i), 1).physical())), levelsBelow - 1, out);
            }
        }
    }

    /**
     * Closes the image, punches the pre-mapped blocks the directory did not use and sets each
     * target's link count to its entries (+1 for its entry in the root directory).
     */
    void finish() throws Exception {
        close();
        List<String> cmds = new ArrayList<>();
        long used = sizeBytes / bs;
        if (used < mappedBlocks) {
            cmds.add("punch " + dirPath + " " + used + " " + (mappedBlocks - 1));
        }
        for (Map.Entry<Long, Integer> e : links.entrySet()) {
            cmds.add("sif <" + e.getKey() + "> links_count " + e.getValue());
        }
        Images.debugfsCmds(img, true, cmds);
    }

    @Override
    public void close() throws IOException {
        if (!closed) {
            closed = true;
            dev.sync();
            dev.close();
        }
    }
}

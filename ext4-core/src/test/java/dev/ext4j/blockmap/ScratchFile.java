package dev.ext4j.blockmap;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.Extent;
import dev.ext4j.format.Feature;
import dev.ext4j.format.Inode;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Images;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.NavigableMap;
import java.util.Set;
import java.util.TreeMap;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * An image made by mkfs with one empty file /f (made by debugfs), whose block map a test drives
 * directly, a pool of blocks that were free in the image, and the bookkeeping that makes e2fsck
 * agree afterwards: the inode (i_block, size, i_blocks, flags, checksum) is rewritten in place, and
 * the block bitmaps and free counts are brought in line with debugfs (setb/freeb, set_bg, ssv).
 */
final class ScratchFile implements AutoCloseable {
    final Path img;
    final int blockSize;
    final Superblock sb;
    final boolean csum;
    final long ino;
    final long inodeOffset;
    final int inodeSize;
    final int fsSeed;
    final int inodeSeed;
    final FileBlockDevice dev;
    final BufferCache cache;
    /** The working i_block, handed to the map under test. */
    final ByteBuffer iBlock;
    /** Blocks free in the image and not handed out. */
    final TreeSet<Long> pool = new TreeSet<>();
    /** Tree or indirect blocks handed out by {@link #source} and not freed. */
    final Set<Long> meta = new HashSet<>();
    /** Data blocks handed out by {@link #allocData} and not freed. */
    final Set<Long> data = new HashSet<>();
    /** Blocks marked in use in the image's bitmap by this helper. */
    private final Set<Long> marked = new HashSet<>();
    /** Tree blocks the file had before the test changed it. */
    int metaBase;
    /** Every freeBlocks call, in order. */
    final List<long[]> freeCalls = new ArrayList<>();
    final Source source = new Source();

    /** The model: logical block to {physical, unwritten ? 1 : 0}. */
    final TreeMap<Long, long[]> model = new TreeMap<>();

    /** A BlockSource over the pool that checks every free. */
    final class Source implements BlockSource {
        /** Allocations still allowed before ENOSPC; negative for no limit. */
        int allowance = -1;
        int allocations;

        @Override
        public long allocateMetaBlock(long goal) throws Ext4Exception {
            if (allowance == 0) {
                throw new Ext4Exception(Errno.ENOSPC, "test pool: no more blocks allowed");
            }
            if (allowance > 0) {
                allowance--;
            }
            Long b = pool.ceiling(Math.max(goal, 1));
            if (b == null) {
                b = pool.isEmpty() ? null : pool.first();
            }
            if (b == null) {
                throw new Ext4Exception(Errno.ENOSPC, "test pool is empty");
            }
            pool.remove(b);
            meta.add(b);
            allocations++;
            return b;
        }

        @Override
        public void freeBlocks(long start, long length) {
            assertTrue(length > 0, "free of " + length + " blocks");
            freeCalls.add(new long[] {start, length});
            for (long b = start; b < start + length; b++) {
                boolean wasMeta = meta.remove(b);
                boolean wasData = data.remove(b);
                assertTrue(wasMeta ^ wasData, "block " + b + " freed but not owned (or owned twice)");
                pool.add(b);
            }
        }
    }

    private ScratchFile(Path img, List<String> setup) throws IOException, dev.ext4j.Ext4Exception {
        this.img = img;
        List<String> cmds = new ArrayList<>(setup);
        if (cmds.stream().noneMatch(c -> c.startsWith("write ") && c.endsWith(" f"))) {
            cmds.add("write /dev/null f");
        }
        Images.debugfsCmds(img, true, cmds);
        ByteBuffer sbBytes = ByteBuffer.wrap(Images.readAt(img, Superblock.OFFSET_IN_IMAGE, Superblock.SIZE)).order(ByteOrder.LITTLE_ENDIAN);
        this.sb = new Superblock(sbBytes);
        this.blockSize = sb.blockSize();
        this.csum = sb.has(Feature.METADATA_CSUM);
        this.ino = Images.inodeOf(img, "/f");
        this.inodeOffset = Images.inodeByteOffset(img, "/f", blockSize);
        this.inodeSize = sb.inodeSize();
        this.fsSeed = csum ? sb.checksumSeed() : 0;
        Inode inode = readInode();
        this.inodeSeed = csum ? Checksums.crc32cLe32(Checksums.crc32cLe32(fsSeed, (int) ino), (int) inode.generation()) : 0;
        this.iBlock = ByteBuffer.allocate(Inode.I_BLOCK_SIZE).order(ByteOrder.LITTLE_ENDIAN);
        this.iBlock.put(0, inode.iBlock(), 0, Inode.I_BLOCK_SIZE);
        for (long[] r : freeRanges(Images.dumpe2fs(img))) {
            for (long b = r[0]; b <= r[1]; b++) {
                pool.add(b);
            }
        }
        this.dev = FileBlockDevice.open(img, false);
        this.cache = new BufferCache(dev, blockSize, sb.blocksCount(), 4L << 20, 0);
    }

    static ScratchFile make(Path dir, String name, String size, List<String> mkfsArgs) {
        return make(dir, name, size, mkfsArgs, List.of());
    }

    /** As {@link #make(Path, String, String, List)}, running debugfs {@code setup} commands before /f is made. */
    static ScratchFile make(Path dir, String name, String size, List<String> mkfsArgs, List<String> setup) {
        Path img = dir.resolve(name + ".img");
        try {
            Files.deleteIfExists(img);
            Images.mkfs(img, size, mkfsArgs, null);
            return new ScratchFile(img, setup);
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (dev.ext4j.Ext4Exception e) {
            throw new IllegalStateException(e);
        }
    }

    Inode readInode() {
        return new Inode(Images.readAt(img, inodeOffset, inodeSize));
    }

    /**
     * Takes over what /f maps already (made by a debugfs setup command): its extents into the
     * model and the data set, its tree blocks into the meta set, all of them as marked in use.
     */
    void adoptExisting() {
        for (ExLine l : debugfsEx()) {
            if (l.leaf()) {
                Extent e = new Extent(l.lstart(), l.pstart(), (int) l.len(), l.unwritten());
                modelPut(e);
                for (long b = e.physical(); b < e.physical() + e.length(); b++) {
                    data.add(b);
                }
            } else {
                meta.add(l.pstart());
            }
        }
        marked.addAll(data);
        marked.addAll(meta);
        metaBase = meta.size();
    }

    /** A writable extent tree over the working i_block. */
    ExtentTree tree(int nodeLimit) {
        return ExtentTree.writable(cache, ino, iBlock, inodeSeed, csum, source, nodeLimit);
    }

    IndirectMap indirect() {
        return IndirectMap.writable(cache, ino, iBlock, source);
    }

    // ---------------------------------------------------------------------------------------------
    // data

    /** {@code n} contiguous free blocks, at or after {@code from} when possible; filled by the caller. */
    long allocData(int n, long from) {
        long start = -1;
        long runStart = -1;
        long prev = -2;
        for (long b : pool.tailSet(from, true)) {
            if (b != prev + 1) {
                runStart = b;
            }
            prev = b;
            if (b - runStart + 1 == n) {
                start = runStart;
                break;
            }
        }
        if (start < 0) {
            if (from > 0) {
                return allocData(n, 0);
            }
            fail("no run of " + n + " free blocks in the test pool");
        }
        for (long b = start; b < start + n; b++) {
            pool.remove(b);
            data.add(b);
        }
        return start;
    }

    /** The bytes a written logical block holds (and every data block gets when allocated). */
    byte[] pattern(long lblk) {
        return pattern(lblk, blockSize);
    }

    static byte[] pattern(long lblk, int blockSize) {
        ByteBuffer b = ByteBuffer.allocate(blockSize).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < blockSize / 8; i++) {
            b.putLong(lblk * 1_000_003L + i);
        }
        return b.array();
    }

    /** Writes the pattern of {@code lblk ..} into {@code n} blocks from {@code pblk}. */
    void fill(long lblk, long pblk, int n) {
        try {
            for (int i = 0; i < n; i++) {
                dev.write((pblk + i) * blockSize, ByteBuffer.wrap(pattern(lblk + i)));
            }
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** Allocates, fills and returns a new extent for the model (not yet inserted). */
    Extent newExtent(long lblk, int len, boolean unwritten, long near) {
        long p = allocData(len, near);
        fill(lblk, p, len);
        return new Extent(lblk, p, len, unwritten);
    }

    void modelPut(Extent e) {
        for (int i = 0; i < e.length(); i++) {
            long[] old = model.put(e.logical() + i, new long[] {e.physical() + i, e.unwritten() ? 1 : 0});
            assertEquals(null, old, "model: block " + (e.logical() + i) + " mapped twice");
        }
    }

    void modelRemove(long from, long to) {
        model.subMap(from, to).clear();
    }

    void modelMarkWritten(long from, long to) {
        for (long[] v : model.subMap(from, to).values()) {
            v[1] = 0;
        }
    }

    /** The model's mapping as maximal extents (what the tree holds when nothing limits merging). */
    List<Extent> modelExtents() {
        List<Extent> out = new ArrayList<>();
        long start = -1;
        long pstart = 0;
        int len = 0;
        boolean unw = false;
        for (Map.Entry<Long, long[]> en : model.entrySet()) {
            long l = en.getKey();
            long p = en.getValue()[0];
            boolean u = en.getValue()[1] != 0;
            if (len > 0 && l == start + len && p == pstart + len && u == unw && len < (u ? 32767 : 32768)) {
                len++;
                continue;
            }
            if (len > 0) {
                out.add(new Extent(start, pstart, len, unw));
            }
            start = l;
            pstart = p;
            len = 1;
            unw = u;
        }
        if (len > 0) {
            out.add(new Extent(start, pstart, len, unw));
        }
        return out;
    }

    /** Expands extents into a block-level map, for comparison with the model. */
    static NavigableMap<Long, String> blocksOf(List<Extent> extents) {
        TreeMap<Long, String> m = new TreeMap<>();
        for (Extent e : extents) {
            for (int i = 0; i < e.length(); i++) {
                m.put(e.logical() + i, (e.physical() + i) + (e.unwritten() ? "u" : ""));
            }
        }
        return m;
    }

    NavigableMap<Long, String> modelBlocks() {
        TreeMap<Long, String> m = new TreeMap<>();
        model.forEach((l, v) -> m.put(l, v[0] + (v[1] != 0 ? "u" : "")));
        return m;
    }

    /** File size that covers every mapped block. */
    long coveringSize() {
        return model.isEmpty() ? 0 : (model.lastKey() + 1) * blockSize;
    }

    // ---------------------------------------------------------------------------------------------
    // committing to the image

    /**
     * Writes the inode (i_block, flags, size, i_blocks from the owned blocks, checksum) and brings
     * the bitmaps and free counts in line with the blocks the file owns now.
     */
    void commit(boolean extents, long size) {
        Set<Long> owned = new HashSet<>(meta);
        owned.addAll(data);
        byte[] raw = Images.readAt(img, inodeOffset, inodeSize);
        Inode inode = new Inode(raw);
        inode.setIBlock(iBlock);
        inode.setFlags(extents ? inode.flags() | Inode.EXTENTS_FL : inode.flags() & ~Inode.EXTENTS_FL);
        inode.setSize(size);
        inode.setBlocks512((long) owned.size() * (blockSize / 512), blockSize);
        if (csum) {
            inode.setChecksum(inode.computeChecksum(fsSeed, ino));
        }
        Images.writeAt(img, inodeOffset, raw);
        syncBitmaps(owned);
    }

    private static final Pattern GROUP = Pattern.compile("^Group (\\d+): \\(Blocks (\\d+)-(\\d+)\\)[^\\[\\n]*(?:\\[([^\\]]*)\\])?", Pattern.MULTILINE);
    private static final Pattern GROUP_FREE = Pattern.compile("^\\s+(\\d+) free blocks,", Pattern.MULTILINE);

    private void syncBitmaps(Set<Long> owned) {
        TreeSet<Long> toSet = new TreeSet<>(owned);
        toSet.removeAll(marked);
        TreeSet<Long> toFree = new TreeSet<>(marked);
        toFree.removeAll(owned);
        if (toSet.isEmpty() && toFree.isEmpty()) {
            return;
        }
        String dump = Images.dumpe2fs(img);
        Map<Integer, Integer> flags = new HashMap<>();
        Map<Integer, Long> free = new HashMap<>();
        Matcher g = GROUP.matcher(dump);
        Matcher fr = GROUP_FREE.matcher(dump);
        while (g.find()) {
            int group = Integer.parseInt(g.group(1));
            int f = 0;
            if (g.group(4) != null) {
                for (String name : g.group(4).split(",\\s*")) {
                    f |= switch (name.trim()) {
                        case "INODE_UNINIT" -> 1;
                        case "BLOCK_UNINIT" -> 2;
                        case "ITABLE_ZEROED" -> 4;
                        default -> 0;
                    };
                }
            }
            flags.put(group, f);
            assertTrue(fr.find(g.end()), "free blocks of group " + group);
            free.put(group, Long.parseLong(fr.group(1)));
        }
        long sbFree = Long.parseLong(Images.dumpe2fsHeader(img).get("Free blocks"));
        List<String> cmds = new ArrayList<>();
        Map<Integer, Long> delta = new TreeMap<>();
        for (long b : toSet) {
            delta.merge(groupOf(b), -1L, Long::sum);
        }
        for (long b : toFree) {
            delta.merge(groupOf(b), 1L, Long::sum);
        }
        for (int group : delta.keySet()) {
            int f = flags.get(group);
            if ((f & 2) != 0) {
                cmds.add("set_bg " + group + " flags " + (f & ~2));
            }
        }
        runs(toSet, "setb", cmds);
        runs(toFree, "freeb", cmds);
        long total = 0;
        for (Map.Entry<Integer, Long> d : delta.entrySet()) {
            cmds.add("set_bg " + d.getKey() + " free_blocks_count " + (free.get(d.getKey()) + d.getValue()));
            total += d.getValue();
        }
        cmds.add("ssv free_blocks_count " + (sbFree + total));
        Images.debugfsCmds(img, true, cmds);
        marked.clear();
        marked.addAll(owned);
    }

    private int groupOf(long block) {
        return (int) ((block - sb.firstDataBlock()) / sb.blocksPerGroup());
    }

    private static void runs(TreeSet<Long> blocks, String cmd, List<String> out) {
        long start = -1;
        long len = 0;
        for (long b : blocks) {
            if (len > 0 && b == start + len) {
                len++;
                continue;
            }
            if (len > 0) {
                out.add(cmd + " " + start + " " + len);
            }
            start = b;
            len = 1;
        }
        if (len > 0) {
            out.add(cmd + " " + start + " " + len);
        }
    }

    static List<long[]> freeRanges(String dumpe2fs) {
        List<long[]> out = new ArrayList<>();
        Matcher m = Pattern.compile("^\\s+Free blocks: (.*)$", Pattern.MULTILINE).matcher(dumpe2fs);
        while (m.find()) {
            for (String r : m.group(1).split(",\\s*")) {
                r = r.trim();
                if (r.isEmpty()) {
                    continue;
                }
                String[] ab = r.split("-");
                long a = Long.parseLong(ab[0]);
                long b = ab.length > 1 ? Long.parseLong(ab[1]) : a;
                out.add(new long[] {a, b});
            }
        }
        return out;
    }

    // ---------------------------------------------------------------------------------------------
    // checking with the tools

    /** e2fsck -fn must exit 0 and say nothing but its pass headers (and, if allowed, optimisation remarks). */
    void assertFsckClean(boolean allowOptimize) {
        Images.Result r = Images.fsckCheck(img);
        List<String> odd = new ArrayList<>();
        for (String line : r.all().split("\n")) {
            String l = line.trim();
            if (l.isEmpty() || l.startsWith("Pass ") || l.startsWith("e2fsck ") || l.startsWith(img.toString() + ":") || Images.isClockNote(l)) {
                continue;
            }
            if (allowOptimize && (l.contains("could be narrower") || l.contains("could be shorter") || l.equals("Optimize? no"))) {
                continue;
            }
            odd.add(l);
        }
        if (r.exitCode() != 0 || !odd.isEmpty()) {
            fail("e2fsck -fn " + img + " exited " + r.exitCode() + ":\n" + r.all());
        }
    }

    /** A leaf or index line of debugfs {@code ex}. */
    record ExLine(int level, int maxLevel, int entry, int entries, long lstart, long lend, long pstart, long len, boolean unwritten, boolean leaf) {
    }

    private static final Pattern EX_LEAF = Pattern.compile(
            "^\\s*(\\d+)/\\s*(\\d+)\\s+(\\d+)/\\s*(\\d+)\\s+(\\d+) -\\s*(\\d+)\\s+(\\d+)(?: -\\s*(\\d+))?\\s+(\\d+)\\s*(.*)$");

    List<ExLine> debugfsEx() {
        return debugfsEx("<" + ino + ">");
    }

    List<ExLine> debugfsEx(String spec) {
        String out = Images.debugfsRead(img, "ex " + spec);
        List<ExLine> lines = new ArrayList<>();
        for (String line : out.split("\n")) {
            if (line.isBlank() || line.startsWith("Level")) {
                continue;
            }
            Matcher m = EX_LEAF.matcher(line);
            assertTrue(m.matches(), "unparsed ex line: '" + line + "'");
            int level = Integer.parseInt(m.group(1));
            int max = Integer.parseInt(m.group(2));
            lines.add(new ExLine(level, max, Integer.parseInt(m.group(3)), Integer.parseInt(m.group(4)),
                    Long.parseLong(m.group(5)), Long.parseLong(m.group(6)), Long.parseLong(m.group(7)),
                    Long.parseLong(m.group(9)), m.group(10).contains("Uninit"), level == max));
        }
        return lines;
    }

    /** The leaf extents as debugfs reads them from the image. */
    List<Extent> debugfsExtents() {
        List<Extent> out = new ArrayList<>();
        for (ExLine l : debugfsEx()) {
            if (l.leaf()) {
                out.add(new Extent(l.lstart(), l.pstart(), (int) l.len(), l.unwritten()));
            }
        }
        return out;
    }

    /** The file's contents as debugfs dumps them. */
    byte[] dump() {
        try {
            Path out = img.resolveSibling(img.getFileName() + ".dump");
            Files.deleteIfExists(out);
            Images.debugfsRead(img, "dump <" + ino + "> " + out);
            byte[] b = Files.readAllBytes(out);
            Files.delete(out);
            return b;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** What the file should read as: the pattern where written, zeros elsewhere. */
    byte[] expectedContents(long size) {
        byte[] out = new byte[(int) size];
        for (Map.Entry<Long, long[]> en : model.entrySet()) {
            long off = en.getKey() * blockSize;
            if (en.getValue()[1] == 0 && off < size) {
                byte[] p = pattern(en.getKey());
                System.arraycopy(p, 0, out, (int) off, (int) Math.min(blockSize, size - off));
            }
        }
        return out;
    }

    @Override
    public void close() throws IOException {
        dev.close();
    }
}

package dev.ext4j.format;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.alloc.GroupTable;
import dev.ext4j.alloc.Layout;
import dev.ext4j.io.BufferCache;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The format views (Superblock, GroupDescriptor, Inode, ExtentNode, DirEntry, DxNode, XattrEntry)
 * field by field against what dumpe2fs and debugfs print for images made by mkfs.ext4, and every
 * checksum recomputed and compared with the stored one.
 */
class LayoutTest {
    @TempDir
    static Path work;
    static Path src;

    record Variant(String name, int blockSize, List<String> args) {
        boolean csum() {
            String a = String.join(" ", args);
            return !a.contains("^metadata_csum") && !a.contains("ext3");
        }

        @Override
        public String toString() {
            return name;
        }
    }

    static Stream<Variant> variants() {
        return Stream.of(
                new Variant("csum-1k", 1024, List.of("-b", "1024", "-L", "layout-1k")),
                new Variant("csum-4k", 4096, List.of("-b", "4096", "-g", "4096", "-L", "layout-4k")),
                new Variant("gdtcsum-1k", 1024, List.of("-b", "1024", "-O", "^metadata_csum,uninit_bg")),
                new Variant("csum-no64bit-1k", 1024, List.of("-b", "1024", "-O", "^64bit")),
                new Variant("gdtcsum-no64bit-1k", 1024, List.of("-b", "1024", "-O", "^64bit,^metadata_csum,uninit_bg")),
                new Variant("csum-seed-1k", 1024, List.of("-b", "1024", "-O", "metadata_csum_seed")),
                new Variant("ext3-4k", 4096, List.of("-b", "4096", "-g", "4096", "-t", "ext3")));
    }

    @BeforeAll
    static void makeSource() throws Exception {
        src = Files.createDirectories(work.resolve("src"));
        Random rnd = new Random(9);
        Path x = Files.writeString(src.resolve("file"), "some data");
        Images.setXattr(x, "user.small", "v".getBytes(StandardCharsets.US_ASCII));
        byte[] big = new byte[700];
        rnd.nextBytes(big);
        Images.setXattr(x, "user.big", big);
        Files.setAttribute(x, "unix:uid", 100_123);
        Files.setAttribute(x, "unix:gid", 70_001);
        try (var f = new java.io.RandomAccessFile(src.resolve("frag").toFile(), "rw")) {
            for (int i = 0; i < 10; i++) {
                byte[] chunk = new byte[4096];
                rnd.nextBytes(chunk);
                f.seek(i * 65536L);
                f.write(chunk);
            }
        }
        Path dir = Files.createDirectory(src.resolve("dir"));
        for (int i = 0; i < 400; i++) {
            Files.createFile(dir.resolve("a-longish-directory-entry-name-" + i));
        }
        Files.createSymbolicLink(src.resolve("link"), Path.of("file"));
        Images.runOk(List.of("mknod", src.resolve("dev").toString(), "b", "259", "65537"));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void viewsMatchE2fsprogs(Variant v, @TempDir Path tmp) throws Exception {
        Path img = Images.mkfs(tmp.resolve("img"), "64M", v.args(), src);
        Images.fsckOptimizeDirs(img);
        Images.assertClean(img);
        // non-zero time extras, so the _extra decoding is compared with something
        Images.debugfs(img, "sif /file mtime_extra 0x75bcd155", "sif /file atime_extra 0x3", "sif /file crtime_extra 0x12345678");

        Map<String, String> h = Images.dumpe2fsHeader(img);
        String full = Images.dumpe2fs(img);
        byte[] image = Files.readAllBytes(img);
        Superblock sb = new Superblock(ByteBuffer.wrap(image, 1024, 1024).slice());
        sb.validate();

        checkSuperblock(sb, h, v);
        int seed = sb.has(Feature.METADATA_CSUM) ? sb.checksumSeed() : 0;
        checkGroups(sb, image, full, seed, v, img);
        checkInodes(sb, image, img, seed, v);
        checkExtents(sb, image, img, seed);
        checkDirectories(sb, image, img, seed);
        checkXattrBlock(sb, image, img, seed);
    }

    // ---------------------------------------------------------------- superblock

    private void checkSuperblock(Superblock sb, Map<String, String> h, Variant v) {
        assertEquals(Superblock.MAGIC, sb.magic());
        assertEquals("0xEF53", h.get("Filesystem magic number"));
        assertEquals(num(h, "Inode count"), sb.inodesCount());
        assertEquals(num(h, "Block count"), sb.blocksCount());
        assertEquals(num(h, "Reserved block count"), sb.reservedBlocksCount());
        assertEquals(num(h, "Free blocks"), sb.freeBlocksCount());
        assertEquals(num(h, "Free inodes"), sb.freeInodesCount());
        assertEquals(num(h, "First block"), sb.firstDataBlock());
        assertEquals(num(h, "Block size"), sb.blockSize());
        assertEquals(v.blockSize(), sb.blockSize());
        assertEquals(num(h, "Blocks per group"), sb.blocksPerGroup());
        assertEquals(num(h, "Inodes per group"), sb.inodesPerGroup());
        assertEquals(num(h, "Inode blocks per group"), Layout.inodeTableBlocks(sb));
        assertEquals(num(h, "Inode size"), sb.inodeSize());
        assertEquals(num(h, "First inode"), sb.firstIno());
        assertEquals(num(h, "Journal inode"), sb.journalInum());
        assertEquals(num(h, "Reserved GDT blocks"), sb.reservedGdtBlocks());
        assertEquals(num(h, "Mount count"), sb.mountCount());
        assertEquals(1, sb.revLevel());
        assertTrue(h.get("Filesystem revision #").startsWith("1 "));
        assertEquals("clean", h.get("Filesystem state"));
        assertEquals(Superblock.STATE_VALID, sb.state());
        assertEquals(uuid(sb.uuid()), h.get("Filesystem UUID"));
        String label = h.get("Filesystem volume name");
        assertEquals(label.equals("<none>") ? "" : label, sb.volumeName());
        Set<String> features = new TreeSet<>(Arrays.asList(h.get("Filesystem features").split("\\s+")));
        assertEquals(features, new TreeSet<>(sb.featureNames()));
        assertEquals(0, Feature.unknownBits(Feature.Kind.INCOMPAT, sb.featureIncompat()));
        if (sb.has(Feature.BIT64)) {
            assertEquals(num(h, "Group descriptor size"), sb.descSize());
        } else {
            assertEquals(32, sb.descSize());
            assertFalse(h.containsKey("Group descriptor size"));
        }
        if (sb.has(Feature.FLEX_BG)) {
            assertEquals(num(h, "Flex block group size"), 1L << sb.logGroupsPerFlex());
        }
        if (sb.has(Feature.EXTRA_ISIZE)) {
            assertEquals(num(h, "Required extra isize"), sb.minExtraIsize());
        }
        int[] seed = sb.hashSeed();
        ByteBuffer sbytes = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
        for (int w : seed) {
            sbytes.putInt(w);
        }
        assertEquals(h.get("Directory Hash Seed"), uuid(sbytes.array()));
        assertEquals(Map.of("legacy", 0, "half_md4", 1, "tea", 2).get(h.get("Default directory hash")), sb.defHashVersion());
        String flags = h.get("Filesystem flags");
        assertEquals(flags.contains("unsigned_directory_hash"), (sb.flags() & Superblock.FLAG_UNSIGNED_HASH) != 0);
        assertEquals(flags.contains("signed_directory_hash") && !flags.contains("unsigned"), (sb.flags() & Superblock.FLAG_SIGNED_HASH) != 0);
        assertEquals(sb.groupCount(), (sb.blocksCount() - sb.firstDataBlock() + sb.blocksPerGroup() - 1) / sb.blocksPerGroup());

        if (sb.has(Feature.METADATA_CSUM)) {
            assertTrue(v.csum());
            assertEquals("crc32c", h.get("Checksum type"));
            assertEquals(1, sb.checksumType());
            assertEquals(hex(h.get("Checksum")), sb.storedChecksum());
            assertEquals(sb.storedChecksum(), sb.computeChecksum(), "superblock checksum");
            if (sb.has(Feature.CSUM_SEED)) {
                assertEquals(hex(h.get("Checksum seed")), sb.checksumSeedField());
                assertEquals(sb.checksumSeedField(), sb.checksumSeed());
            } else {
                assertEquals(Checksums.crc32c(~0, sb.uuid(), 0, 16), sb.checksumSeed());
            }
        } else {
            assertFalse(v.csum());
            assertFalse(h.containsKey("Checksum"));
        }
        // the superblock is also what raw() hands out
        assertEquals(sb.raw().getShort(0x38) & 0xFFFF, Superblock.MAGIC);
    }

    // ---------------------------------------------------------------- group descriptors

    private static final Pattern GROUP = Pattern.compile(
            "^Group (\\d+): \\(Blocks (\\d+)-(\\d+)\\)(?: csum 0x([0-9a-f]+))?(?: \\[([A-Z_, ]*)\\])?", Pattern.MULTILINE);

    private void checkGroups(Superblock sb, byte[] image, String dump, int seed, Variant v, Path img) throws Exception {
        int bs = sb.blockSize();
        int ds = sb.descSize();
        long groups = sb.groupCount();
        assertTrue(groups >= 3, "enough groups to be interesting: " + groups);
        long gdtStart = sb.firstDataBlock() + 1;
        ByteBuffer gdt = ByteBuffer.wrap(image, (int) (gdtStart * bs), (int) (Layout.gdtBlocks(sb) * bs)).slice().order(ByteOrder.LITTLE_ENDIAN);

        List<int[]> starts = new ArrayList<>();
        Matcher m = GROUP.matcher(dump);
        while (m.find()) {
            starts.add(new int[] {m.start(), Integer.parseInt(m.group(1))});
        }
        assertEquals(groups, starts.size(), "groups in dumpe2fs");
        boolean csum = sb.has(Feature.METADATA_CSUM);
        boolean gdtCsum = sb.has(Feature.GDT_CSUM);

        List<String> warnings = new ArrayList<>();
        try (FileBlockDevice dev = FileBlockDevice.open(img, true)) {
            BufferCache cache = new BufferCache(dev, bs, sb.blocksCount(), 1 << 20, 0);
            GroupTable table = GroupTable.load(sb, cache, true, warnings);
            assertEquals(List.of(), warnings, "no checksum warnings on a clean image");
            assertEquals(groups, table.groupCount());

            for (int g = 0; g < groups; g++) {
                int from = starts.get(g)[0];
                int to = g + 1 < groups ? starts.get(g + 1)[0] : dump.length();
                String text = dump.substring(from, to);
                Matcher head = GROUP.matcher(text);
                assertTrue(head.find());
                assertEquals(g, Integer.parseInt(head.group(1)));
                GroupDescriptor gd = new GroupDescriptor(gdt, g * ds, ds);
                GroupDescriptor viaTable = table.get(g);
                String where = v + " group " + g;

                assertEquals(firstNum(text, "Block bitmap at (\\d+)"), gd.blockBitmap(), where);
                assertEquals(firstNum(text, "Inode bitmap at (\\d+)"), gd.inodeBitmap(), where);
                assertEquals(firstNum(text, "Inode table at (\\d+)"), gd.inodeTable(), where);
                assertEquals(firstNum(text, "(\\d+) free blocks"), gd.freeBlocksCount(), where);
                assertEquals(firstNum(text, "(\\d+) free inodes"), gd.freeInodesCount(), where);
                assertEquals(firstNum(text, "(\\d+) directories"), gd.usedDirsCount(), where);
                if (csum || gdtCsum) {
                    assertEquals(firstNum(text, "(\\d+) unused inodes"), gd.itableUnused(), where);
                }
                String fl = head.group(5) == null ? "" : head.group(5);
                assertEquals(fl.contains("INODE_UNINIT"), (gd.flags() & GroupDescriptor.FLAG_INODE_UNINIT) != 0, where);
                assertEquals(fl.contains("BLOCK_UNINIT"), (gd.flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) != 0, where);
                assertEquals(fl.contains("ITABLE_ZEROED"), (gd.flags() & GroupDescriptor.FLAG_INODE_ZEROED) != 0, where);
                if (csum || gdtCsum) {
                    assertNotNull(head.group(4), where + ": dumpe2fs shows a descriptor checksum");
                    assertEquals(Integer.parseInt(head.group(4), 16), gd.storedChecksum(), where);
                    assertEquals(gd.storedChecksum(), gd.computeChecksum(csum, seed, sb.uuid(), g), where + ": descriptor checksum");
                    assertTrue(gd.computeChecksum(csum, seed, sb.uuid(), g + 1) != gd.storedChecksum()
                            || gd.computeChecksum(csum, seed, sb.uuid(), g + 2) != gd.storedChecksum(), "the group number is in the checksum");
                } else {
                    assertEquals(null, head.group(4), where + ": no descriptor checksum without uninit_bg/metadata_csum");
                }

                assertEquals(gd.blockBitmap(), viaTable.blockBitmap());
                assertEquals(gd.inodeTable(), viaTable.inodeTable());
                assertEquals(gd.storedChecksum(), viaTable.storedChecksum());

                assertEquals(text.contains("superblock at"), Layout.hasSuper(sb, g), where + ": superblock backup");
                if (Layout.hasSuper(sb, g)) {
                    long first = sb.firstDataBlock() + g * sb.blocksPerGroup();
                    assertEquals(first + 1, firstNum(text, "Group descriptors at (\\d+)"), where);
                    assertEquals(first + Layout.gdtBlocks(sb), firstNum(text, "Group descriptors at \\d+-(\\d+)"), where);
                }

                if (csum) {
                    Matcher bb = Pattern.compile("Block bitmap at .*csum 0x([0-9a-f]+)").matcher(text);
                    Matcher ib = Pattern.compile("Inode bitmap at .*csum 0x([0-9a-f]+)").matcher(text);
                    assertTrue(bb.find() && ib.find(), where);
                    assertEquals(Long.parseLong(bb.group(1), 16), gd.blockBitmapChecksum(), where);
                    assertEquals(Long.parseLong(ib.group(1), 16), gd.inodeBitmapChecksum(), where);
                    assertEquals(ds >= 64, gd.hasChecksumHi());
                    long mask = gd.hasChecksumHi() ? 0xFFFFFFFFL : 0xFFFFL;
                    if ((gd.flags() & GroupDescriptor.FLAG_BLOCK_UNINIT) == 0) {
                        int c = Checksums.crc32c(seed, image, (int) (gd.blockBitmap() * bs), (int) (sb.clustersPerGroup() / 8));
                        assertEquals(c & mask, gd.blockBitmapChecksum(), where + ": block bitmap checksum");
                    }
                    if ((gd.flags() & GroupDescriptor.FLAG_INODE_UNINIT) == 0) {
                        int c = Checksums.crc32c(seed, image, (int) (gd.inodeBitmap() * bs), (int) (sb.inodesPerGroup() / 8));
                        assertEquals(c & mask, gd.inodeBitmapChecksum(), where + ": inode bitmap checksum");
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------- inodes

    private Inode inodeAt(Superblock sb, byte[] image, Path img, String spec) {
        long off = Images.inodeByteOffset(img, spec, sb.blockSize());
        return new Inode(Arrays.copyOfRange(image, (int) off, (int) off + sb.inodeSize()));
    }

    private void checkInodes(Superblock sb, byte[] image, Path img, int seed, Variant v) {
        for (String path : new String[] {"/", "/file", "/frag", "/dir", "/link", "/dev", "/lost+found"}) {
            String stat = Images.stat(img, "\"" + path + "\"");
            long ino = Images.statNumber(stat, "Inode");
            Inode in = inodeAt(sb, image, img, "<" + ino + ">");
            String where = v + " " + path;
            assertEquals(sb.inodeSize(), in.rawSize());
            assertEquals(Integer.parseInt(group(stat, "Mode:\\s+([0-7]+)"), 8), in.mode() & 07777, where);
            String type = group(stat, "Type: (\\S+)");
            int ft = switch (type) {
                case "regular" -> Inode.S_IFREG;
                case "directory" -> Inode.S_IFDIR;
                case "symlink" -> Inode.S_IFLNK;
                case "block" -> Inode.S_IFBLK;
                default -> throw new AssertionError(type);
            };
            assertEquals(ft, in.fileType(), where);
            assertEquals(Long.parseLong(group(stat, "Flags: 0x([0-9a-f]+)"), 16), in.flags() & 0xFFFFFFFFL, where);
            assertEquals(Images.statNumber(stat, "Generation"), in.generation(), where);
            assertEquals(Images.statNumber(stat, "User"), in.uid(), where);
            assertEquals(Images.statNumber(stat, "Group"), in.gid(), where);
            assertEquals(Images.statNumber(stat, "Project"), in.projectId(), where);
            assertEquals(Long.parseLong(group(stat, "Size: (\\d+)")), in.size(), where);
            assertEquals(Images.statNumber(stat, "File ACL"), in.fileAcl(), where);
            assertEquals(Images.statNumber(stat, "Links"), in.linksCount(), where);
            assertEquals(Images.statNumber(stat, "Blockcount"), in.blocks512(sb.has(Feature.HUGE_FILE), sb.blockSize()), where);
            assertEquals(Images.statNumber(stat, "Size of extra inode fields"), in.extraIsize(), where);
            for (String t : new String[] {"ctime", "atime", "mtime", "crtime"}) {
                Matcher tm = Pattern.compile("(?m)^\\s*" + t + ": 0x([0-9a-f]{8}):([0-9a-f]{8})").matcher(stat);
                assertTrue(tm.find(), where + " " + t + " in\n" + stat);
                long lo = (int) Long.parseLong(tm.group(1), 16);
                int extra = (int) Long.parseLong(tm.group(2), 16);
                long secs = lo + ((long) (extra & 3) << 32);
                int nanos = extra >>> 2;
                switch (t) {
                    case "ctime" -> { assertEquals(secs, in.ctimeSeconds(), where); assertEquals(nanos, in.ctimeNanos(), where); }
                    case "atime" -> { assertEquals(secs, in.atimeSeconds(), where); assertEquals(nanos, in.atimeNanos(), where); }
                    case "mtime" -> { assertEquals(secs, in.mtimeSeconds(), where); assertEquals(nanos, in.mtimeNanos(), where); }
                    default -> { assertEquals(secs, in.crtimeSeconds(), where); assertEquals(nanos, in.crtimeNanos(), where); }
                }
            }
            if (path.equals("/file")) {
                assertEquals(0x75bcd155 >>> 2, in.mtimeNanos());
                assertEquals((long) in.raw().getInt(0x08) + (3L << 32), in.atimeSeconds(), "atime epoch bits 3");
                assertEquals(0, in.atimeNanos());
                assertEquals(0x12345678 >>> 2, in.crtimeNanos());
                assertEquals(100_123, in.uid());
                assertEquals(70_001, in.gid());
            }
            if (path.equals("/dev")) {
                Matcher dm = Pattern.compile("Device major/minor number: ([0-9a-f]+):([0-9a-f]+)").matcher(stat);
                assertTrue(dm.find(), stat);
                assertEquals(259, in.deviceMajor());
                assertEquals(65537, in.deviceMinor());
            }
            if (sb.has(Feature.METADATA_CSUM)) {
                assertEquals(Long.parseLong(group(stat, "Inode checksum: 0x([0-9a-f]+)"), 16), in.storedChecksum() & 0xFFFFFFFFL, where);
                assertTrue(in.checksumHasHi());
                assertEquals(in.storedChecksum(), in.computeChecksum(seed, ino), where + ": inode checksum");
                assertTrue(in.computeChecksum(seed, ino + 1) != in.storedChecksum(), "the inode number is in the checksum");
            }
        }
        // the symlink target is in i_block
        Inode link = inodeAt(sb, image, img, "/link");
        byte[] target = new byte[(int) link.size()];
        link.iBlock().get(0, target);
        assertArrayEquals("file".getBytes(StandardCharsets.US_ASCII), target);
    }

    // ---------------------------------------------------------------- extents

    private void checkExtents(Superblock sb, byte[] image, Path img, int fsSeed) {
        if (!sb.has(Feature.EXTENTS)) {
            Inode frag = inodeAt(sb, image, img, "/frag");
            assertFalse(frag.hasFlag(Inode.EXTENTS_FL));
            List<Long> blocks = Images.blocks(img, "/frag");
            assertEquals(blocks.get(0), frag.blockWord(0), "direct block 0");
            return;
        }
        long ino = Images.inodeOf(img, "/frag");
        Inode frag = inodeAt(sb, image, img, "<" + ino + ">");
        assertTrue(frag.hasFlag(Inode.EXTENTS_FL));
        ExtentNode root = new ExtentNode(frag.iBlock());
        assertEquals(ExtentNode.MAGIC, root.magic());
        assertEquals(4, root.max());
        assertEquals(1, root.depth());
        assertEquals(1, root.entries());
        Matcher etb = Pattern.compile("\\(ETB0\\):(\\d+)").matcher(Images.stat(img, "/frag"));
        assertTrue(etb.find());
        long leafBlock = Long.parseLong(etb.group(1));
        assertEquals(leafBlock, root.indexLeaf(0));
        assertEquals(0, root.logical(0));

        int bs = sb.blockSize();
        ByteBuffer lb = ByteBuffer.wrap(image, (int) (leafBlock * bs), bs).slice().order(ByteOrder.LITTLE_ENDIAN);
        ExtentNode leaf = new ExtentNode(lb);
        assertEquals(ExtentNode.MAGIC, leaf.magic());
        assertEquals(0, leaf.depth());
        assertEquals((bs - 12) / 12, leaf.max());
        // debugfs "ex": level 1 lines "1/ 1   1/ 11     0 -     3  1172 -  1175      4"
        String ex = Images.debugfsRead(img, "ex /frag");
        Matcher lm = Pattern.compile("(?m)^\\s*1/\\s*1\\s+(\\d+)/\\s*(\\d+)\\s+(\\d+) -\\s+(\\d+)\\s+(\\d+) -\\s+(\\d+)\\s+(\\d+)").matcher(ex);
        int n = 0;
        while (lm.find()) {
            Extent e = leaf.extent(n);
            assertEquals(Long.parseLong(lm.group(3)), e.logical(), "extent " + n);
            assertEquals(Long.parseLong(lm.group(5)), e.physical(), "extent " + n);
            assertEquals(Integer.parseInt(lm.group(7)), e.length(), "extent " + n);
            assertFalse(e.unwritten());
            assertEquals(Integer.parseInt(lm.group(2)), leaf.entries());
            n++;
        }
        assertEquals(leaf.entries(), n, "every leaf extent compared:\n" + ex);
        assertTrue(n >= 5);
        if (sb.has(Feature.METADATA_CSUM)) {
            int seed = Checksums.crc32cLe32(Checksums.crc32cLe32(fsSeed, (int) ino), (int) frag.generation());
            assertEquals(leaf.storedChecksum(), leaf.computeChecksum(seed), "extent block checksum");
            assertEquals(lb.getInt(12 + leaf.max() * 12), leaf.storedChecksum());
        }
    }

    // ---------------------------------------------------------------- directories

    private void checkDirectories(Superblock sb, byte[] image, Path img, int fsSeed) {
        int bs = sb.blockSize();
        boolean csum = sb.has(Feature.METADATA_CSUM);
        // the root directory's first block, entry by entry
        Inode root = inodeAt(sb, image, img, "<2>");
        int rootSeed = Checksums.crc32cLe32(Checksums.crc32cLe32(fsSeed, 2), (int) root.generation());
        long rb = Images.blocks(img, "/").get(0);
        ByteBuffer b = ByteBuffer.wrap(image, (int) (rb * bs), bs).slice().order(ByteOrder.LITTLE_ENDIAN);
        List<String> names = new ArrayList<>();
        Map<String, Long> inos = new HashMap<>();
        int end = csum ? bs - DirEntry.TAIL_SIZE : bs;
        int off = 0;
        while (off < end) {
            int rec = DirEntry.recLen(b, off, bs);
            int nl = DirEntry.nameLen(b, off, true);
            assertTrue(rec >= DirEntry.minRecLen(nl) && off + rec <= end, "entry at " + off);
            String name = new String(DirEntry.name(b, off, nl), StandardCharsets.ISO_8859_1);
            names.add(name);
            inos.put(name, DirEntry.inode(b, off));
            assertTrue(DirEntry.nameEquals(b, off, nl, name.getBytes(StandardCharsets.ISO_8859_1)));
            off += rec;
        }
        assertEquals(end, off);
        assertEquals(new TreeSet<>(List.of(".", "..", "lost+found", "file", "frag", "dir", "link", "dev")), new TreeSet<>(names));
        assertEquals(2, inos.get("."));
        assertEquals(2, inos.get(".."));
        assertEquals(Images.inodeOf(img, "/file"), inos.get("file"));
        assertEquals(Images.inodeOf(img, "/dir"), inos.get("dir"));
        if (csum) {
            assertTrue(DirEntry.isTail(b, bs - DirEntry.TAIL_SIZE));
            assertEquals(Checksums.crc32c(rootSeed, b, 0, bs - DirEntry.TAIL_SIZE), DirEntry.tailChecksum(b, bs - DirEntry.TAIL_SIZE), "leaf checksum");
        } else {
            assertFalse(DirEntry.isTail(b, bs - DirEntry.TAIL_SIZE));
        }

        // the htree root of /dir against debugfs htree
        long dirIno = Images.inodeOf(img, "/dir");
        Inode dir = inodeAt(sb, image, img, "<" + dirIno + ">");
        assertTrue(dir.hasFlag(Inode.INDEX_FL));
        long d0 = Images.blocks(img, "/dir").get(0);
        ByteBuffer db = ByteBuffer.wrap(image, (int) (d0 * bs), bs).slice().order(ByteOrder.LITTLE_ENDIAN);
        DxNode dx = DxNode.root(db);
        String ht = Images.debugfsLenient(img, "htree /dir");
        assertEquals(Long.parseLong(group(ht, "Hash Version: (\\d+)")), dx.hashVersion());
        assertEquals(8, dx.infoLength());
        assertEquals(Long.parseLong(group(ht, "Indirect levels: (\\d+)")), dx.indirectLevels());
        assertEquals(Long.parseLong(group(ht, "Number of entries \\(count\\): (\\d+)")), dx.count());
        assertEquals(Long.parseLong(group(ht, "Number of entries \\(limit\\): (\\d+)")), dx.limit());
        assertEquals(DxNode.expectedLimit(bs, DxNode.ROOT_ENTRIES, csum), dx.limit());
        Matcher em = Pattern.compile("Entry #(\\d+): Hash 0x([0-9a-f]+), block (\\d+)").matcher(ht);
        for (int i = 0; i < dx.count(); i++) {
            assertTrue(em.find());
            assertEquals(i, Integer.parseInt(em.group(1)));
            assertEquals((int) Long.parseLong(em.group(2), 16), dx.hash(i), "dx entry " + i);
            assertEquals(Long.parseLong(em.group(3)), dx.block(i), "dx entry " + i);
        }
        assertEquals(".", new String(DirEntry.name(db, 0, DirEntry.nameLen(db, 0, true)), StandardCharsets.ISO_8859_1));
        assertEquals(bs - 12, DirEntry.recLen(db, 12, bs), "'..' covers the index");
        if (csum) {
            int seed = Checksums.crc32cLe32(Checksums.crc32cLe32(fsSeed, (int) dirIno), (int) dir.generation());
            assertEquals((int) Long.parseLong(group(ht, "Checksum: 0x([0-9a-f]+)"), 16), dx.storedChecksum());
            assertEquals(dx.storedChecksum(), dx.computeChecksum(seed), "htree root checksum");
        }
    }

    // ---------------------------------------------------------------- xattr block

    private void checkXattrBlock(Superblock sb, byte[] image, Path img, int fsSeed) {
        int bs = sb.blockSize();
        long block = Images.statNumber(Images.stat(img, "/file"), "File ACL");
        assertTrue(block > 0);
        ByteBuffer b = ByteBuffer.wrap(image, (int) (block * bs), bs).slice().order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(XattrEntry.MAGIC, XattrEntry.magic(b, 0));
        assertEquals(1, XattrEntry.refcount(b));
        assertEquals(1, XattrEntry.blocks(b));
        int off = XattrEntry.BLOCK_HEADER_SIZE;
        List<String> names = new ArrayList<>();
        while (!XattrEntry.isLast(b, off)) {
            names.add(XattrEntry.nameIndex(b, off) + ":" + new String(XattrEntry.name(b, off), StandardCharsets.ISO_8859_1));
            if (new String(XattrEntry.name(b, off), StandardCharsets.ISO_8859_1).equals("big")) {
                assertEquals(700, XattrEntry.valueSize(b, off));
                assertEquals(0, XattrEntry.valueInum(b, off));
                assertTrue(XattrEntry.valueOffs(b, off) + 700 <= bs);
            }
            off += XattrEntry.entryLen(XattrEntry.nameLen(b, off));
        }
        assertTrue(names.contains("1:big"), names.toString());
        if (sb.has(Feature.METADATA_CSUM)) {
            assertEquals(XattrEntry.blockChecksum(b), XattrEntry.computeBlockChecksum(b, fsSeed, block, bs), "xattr block checksum");
            assertTrue(XattrEntry.computeBlockChecksum(b, fsSeed, block + 1, bs) != XattrEntry.blockChecksum(b));
        }
    }

    // ---------------------------------------------------------------- parsing helpers

    private static long num(Map<String, String> h, String key) {
        String v = h.get(key);
        assertNotNull(v, "dumpe2fs -h has no \"" + key + "\"");
        Matcher m = Pattern.compile("-?\\d+").matcher(v);
        assertTrue(m.find(), key + ": " + v);
        return Long.parseLong(m.group());
    }

    private static int hex(String s) {
        assertNotNull(s);
        return (int) Long.parseLong(s.replace("0x", "").trim(), 16);
    }

    private static long firstNum(String text, String regex) {
        Matcher m = Pattern.compile(regex).matcher(text);
        assertTrue(m.find(), "/" + regex + "/ in\n" + text);
        return Long.parseLong(m.group(1));
    }

    private static String group(String text, String regex) {
        Matcher m = Pattern.compile(regex).matcher(text);
        assertTrue(m.find(), "/" + regex + "/ in\n" + text);
        return m.group(1);
    }

    private static String uuid(byte[] u) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < 16; i++) {
            if (i == 4 || i == 6 || i == 8 || i == 10) {
                sb.append('-');
            }
            sb.append(String.format("%02x", u[i]));
        }
        return sb.toString();
    }
}

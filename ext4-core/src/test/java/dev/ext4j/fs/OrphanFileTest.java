package dev.ext4j.fs;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

import dev.ext4j.Errno;
import dev.ext4j.Ext4Exception;
import dev.ext4j.format.Checksums;
import dev.ext4j.format.OrphanBlock;
import dev.ext4j.format.Superblock;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The orphan file (COMPAT_ORPHAN_FILE) at mount: orphans the kernel left in its slots after a
 * crash are finished by a read-write mount, the slots freed and orphan_present cleared; a damaged
 * orphan file refuses the read-write mount without writing; ext4j's own orphans go on the classic
 * s_last_orphan chain, which e2fsck accepts on orphan_file filesystems too.
 */
class OrphanFileTest {
    @TempDir
    Path work;

    private static byte[] pattern(int len, int seed) {
        byte[] b = new byte[len];
        for (int i = 0; i < len; i++) {
            b[i] = (byte) (i * 31 + seed);
        }
        return b;
    }

    private static byte[] name(String s) {
        return s.getBytes(StandardCharsets.UTF_8);
    }

    private static List<String> features(Path img) {
        return Arrays.asList(Images.dumpe2fsHeader(img).get("Filesystem features").trim().split("\\s+"));
    }

    private static long freeBlocks(Path img) {
        return Long.parseLong(Images.dumpe2fsHeader(img).get("Free blocks").trim());
    }

    /** The inode numbers in use in the orphan file's slots, as a read-only mount sees them (after an in-memory replay). */
    private static List<Long> slotsInUse(Path img) throws Exception {
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            return OrphanFile.load(fs.superblock(), fs.sbi().cache, fs.sbi().inodes).used().stream().map(OrphanFile.Slot::ino).collect(Collectors.toList());
        }
    }

    // ---------------------------------------------------------------- made by the kernel

    @Test
    void orphansTheKernelLeftInTheOrphanFileAreDeleted() throws Exception {
        Path img = Images.mkfs(work.resolve("kernel.img"), "64M", List.of("-b", "4096", "-O", "orphan_file"), null);
        Path crashed = work.resolve("crashed.img");
        Path mnt = Files.createDirectories(work.resolve("mnt"));
        Assumptions.assumeTrue("root".equals(System.getProperty("user.name")) && Files.exists(Path.of("/dev/loop-control")),
                "the kernel's loop mount needs root and loop devices");
        Images.Result m = Images.run(List.of("mount", "-t", "ext4", "-o", "loop", img.toString(), mnt.toString()));
        if (m.exitCode() != 0) {
            fail("mount -o loop " + img + ": " + m.all());
        }
        List<Process> holders = new ArrayList<>();
        long[] gone = new long[2];
        try {
            Files.write(mnt.resolve("keep"), pattern(12288, 1));
            for (int i = 0; i < gone.length; i++) {
                Path f = mnt.resolve("gone" + i);
                Files.write(f, pattern((1 << 20) + i * 4096, i + 2));
                gone[i] = ((Number) Files.getAttribute(f, "unix:ino")).longValue();
            }
            Images.runOk(List.of("sync"));
            for (int i = 0; i < gone.length; i++) {
                // a process that holds the file open as its stdin, so the unlink leaves an orphan
                Process p = new ProcessBuilder("sleep", "1000").redirectInput(mnt.resolve("gone" + i).toFile())
                        .redirectOutput(ProcessBuilder.Redirect.DISCARD).redirectError(ProcessBuilder.Redirect.DISCARD).start();
                holders.add(p);
            }
            for (int i = 0; i < gone.length; i++) {
                Files.delete(mnt.resolve("gone" + i));
            }
            Images.runOk(List.of("sync"));
            Images.copy(img, crashed); // a crash: the kernel never got to the last close
        } finally {
            for (Process p : holders) {
                p.destroy();
                p.waitFor(30, TimeUnit.SECONDS);
            }
            Images.Result u = Images.run(List.of("umount", mnt.toString()));
            if (u.exitCode() != 0) {
                Images.run(List.of("umount", "-l", mnt.toString()));
            }
        }
        Images.assertClean(img); // the kernel's own unmount finished them

        List<String> f = features(crashed);
        assertTrue(f.contains("orphan_present"), "the crashed copy says orphans may be present: " + f);
        List<Long> inSlots = slotsInUse(crashed);
        for (long ino : gone) {
            assertTrue(inSlots.contains(ino), "inode " + ino + " is in the orphan file after replay: " + inSlots);
        }
        assertEquals(0, Long.parseLong(Images.dumpe2fsHeader(crashed).getOrDefault("First orphan inode", "0").trim()),
                "the kernel used the orphan file, not the chain");

        long freeBefore;
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, MountOptions.defaults().withReadOnly(true))) {
            freeBefore = fs.statfs(false).freeBlocks();
        }
        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly(), fs.messages().toString());
            assertTrue(fs.statfs(false).freeBlocks() >= freeBefore + 2 * 256, "the orphans' blocks were freed: " + freeBefore + " -> "
                    + fs.statfs(false).freeBlocks());
            byte[] back = new byte[12288];
            assertEquals(12288, fs.read(fs.lookup(Ext4FileSystem.ROOT_INO, name("keep")), 0, ByteBuffer.wrap(back)));
            assertArrayEquals(pattern(12288, 1), back);
        }
        f = features(crashed);
        assertFalse(f.contains("orphan_present"), "orphan_present is cleared: " + f);
        assertFalse(f.contains("needs_recovery"), f.toString());
        for (long ino : gone) {
            String out = Images.debugfsRead(crashed, "testi <" + ino + ">");
            assertTrue(out.contains("not in use"), "inode " + ino + " is free: " + out);
        }
        Images.assertClean(crashed);
        assertEquals(List.of(), slotsInUse(crashed));
    }

    // ---------------------------------------------------------------- crafted

    /** Writes {@code ino} into slot {@code index} of the orphan file's block {@code block} and restamps the block. */
    private static void putInSlot(Path img, int block, int index, long ino) throws Exception {
        byte[] sbBytes = Images.readAt(img, 1024, 1024);
        Superblock sb = new Superblock(ByteBuffer.wrap(sbBytes).order(ByteOrder.LITTLE_ENDIAN));
        int bs = sb.blockSize();
        long fileIno = sb.orphanFileInum();
        long pblk = Images.blocks(img, "<" + fileIno + ">").get(block);
        ByteBuffer b = ByteBuffer.wrap(Images.readAt(img, pblk * bs, bs)).order(ByteOrder.LITTLE_ENDIAN);
        OrphanBlock ob = OrphanBlock.of(b, bs);
        ob.setSlot(index, ino);
        if (sb.has(dev.ext4j.format.Feature.METADATA_CSUM)) {
            long gen = Images.statNumber(Images.stat(img, "<" + fileIno + ">"), "Generation");
            ob.updateChecksum(Checksums.crc32cLe32(Checksums.crc32cLe32(sb.checksumSeed(), (int) fileIno), (int) gen), pblk);
        }
        Images.writeAt(img, pblk * bs, b.array());
    }

    private static long orphanBlock(Path img, int block) {
        return Images.blocks(img, "<12>").get(block);
    }

    private Path craftedImage(String name, List<String> mkfsArgs) throws Exception {
        Path src = Files.createDirectories(work.resolve("src-" + name));
        Files.write(src.resolve("del"), pattern(100_000, 3));
        Files.write(src.resolve("trunc"), pattern(40960, 5));
        Files.write(src.resolve("keep"), pattern(5000, 7));
        List<String> args = new ArrayList<>(mkfsArgs);
        args.addAll(List.of("-O", "orphan_file"));
        return Images.mkfs(work.resolve(name), "64M", args, src);
    }

    @ParameterizedTest(name = "{0}")
    @ValueSource(strings = {"4k", "1k", "4k-nocsum"})
    void deletesAndTruncatesInTheOrphanFileAreFinished(String variant) throws Exception {
        List<String> args = switch (variant) {
            case "4k" -> List.of("-b", "4096");
            case "1k" -> List.of("-b", "1024");
            default -> List.of("-b", "4096", "-O", "^metadata_csum");
        };
        int bs = variant.startsWith("1k") ? 1024 : 4096;
        Path img = craftedImage("crafted-" + variant + ".img", args);
        long del = Images.inodeOf(img, "/del");
        long trunc = Images.inodeOf(img, "/trunc");
        int delBlocks = (100_000 + bs - 1) / bs;
        // a delete: the last name went while the file was open; a truncate to one block that
        // stopped after its first step (size cut, blocks still mapped)
        Images.debugfs(img, "unlink /del", "sif <" + del + "> links_count 0", "sif /trunc size " + bs, "feature orphan_present");
        putInSlot(img, 1, 5, del);
        putInSlot(img, 0, 0, trunc);
        long freeBefore = freeBlocks(img);
        assertEquals(List.of(trunc, del), slotsInUse(img));

        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly(), fs.messages().toString());
            long freed = fs.statfs(false).freeBlocks() - freeBefore;
            // del's data (and an index block at most), and trunc's blocks past the first
            assertTrue(freed >= delBlocks + 40960 / bs - 1 && freed <= delBlocks + 40960 / bs + 1, "freed " + freed);
            byte[] back = new byte[bs];
            assertEquals(bs, fs.read(trunc, 0, ByteBuffer.wrap(back)));
            assertArrayEquals(Arrays.copyOf(pattern(40960, 5), bs), back);
            assertEquals(bs, fs.stat(trunc).size());
            assertEquals(1, fs.stat(trunc).nlink());
            Expect.errno(Errno.ENOENT, () -> fs.lookup(Ext4FileSystem.ROOT_INO, name("del")));
        }
        assertFalse(features(img).contains("orphan_present"));
        assertTrue(Images.debugfsRead(img, "testi <" + del + ">").contains("not in use"));
        assertEquals(List.of(), slotsInUse(img));
        Images.assertClean(img);
    }

    @Test
    void slotsNamingFreeOrReservedInodesAreClearedAndLogged() throws Exception {
        Path img = craftedImage("stale.img", List.of("-b", "4096"));
        Images.debugfs(img, "feature orphan_present");
        putInSlot(img, 0, 3, 5000);  // free in the inode bitmap
        putInSlot(img, 2, 7, 7);     // reserved (the resize inode)
        putInSlot(img, 3, 1, 12);    // the orphan file itself
        long keep = Images.inodeOf(img, "/keep");
        putInSlot(img, 4, 0, keep);  // a live file, linked: only blocks past EOF go (none)
        putInSlot(img, 4, 1, keep);  // and again: finished once
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            byte[] back = new byte[5000];
            assertEquals(5000, fs.read(fs.lookup(Ext4FileSystem.ROOT_INO, name("keep")), 0, ByteBuffer.wrap(back)));
            assertArrayEquals(pattern(5000, 7), back);
        }
        assertEquals(List.of(), slotsInUse(img));
        assertFalse(features(img).contains("orphan_present"));
        Images.assertClean(img);
    }

    @Test
    void aBadTailMagicRefusesTheReadWriteMountAndWritesNothing() throws Exception {
        Path img = craftedImage("magic.img", List.of("-b", "4096"));
        long pblk = orphanBlock(img, 2);
        Images.writeLe32(img, pblk * 4096 + 4096 - 8, 0x12345678);
        String before = Images.sha256(img);
        Ext4Exception e = Expect.errno(Errno.EUCLEAN, () -> Ext4FileSystem.open(img, MountOptions.defaults()).close());
        assertTrue(e.getMessage().contains("orphan file inode 12, block 2 (physical " + pblk + ")"), e.getMessage());
        assertTrue(e.getMessage().contains("bad magic 0x12345678"), e.getMessage());
        assertEquals(before, Images.sha256(img), "a refused mount leaves the image as it was");
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            byte[] back = new byte[5000];
            assertEquals(5000, fs.read(fs.lookup(Ext4FileSystem.ROOT_INO, name("keep")), 0, ByteBuffer.wrap(back)));
        }
        assertEquals(before, Images.sha256(img));
        // e2fsck repairs it, and then the read-write mount goes ahead
        Images.Result fix = Images.run(List.of("e2fsck", "-fy", img.toString()));
        assertTrue(fix.exitCode() <= 1, fix.all());
        Images.assertClean(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly());
        }
        Images.assertClean(img);
    }

    @Test
    void aBadChecksumRefusesTheReadWriteMount() throws Exception {
        Path img = craftedImage("csum.img", List.of("-b", "4096"));
        long pblk = orphanBlock(img, 1);
        Images.writeLe32(img, pblk * 4096 + 40, 13); // a slot written without restamping the block
        String before = Images.sha256(img);
        Ext4Exception e = Expect.errno(Errno.EBADMSG, () -> Ext4FileSystem.open(img, MountOptions.defaults()).close());
        assertTrue(e.getMessage().contains("orphan file inode 12, block 1 (physical " + pblk + ")"), e.getMessage());
        assertEquals(before, Images.sha256(img));
        Images.Result fix = Images.run(List.of("e2fsck", "-fy", img.toString()));
        assertTrue(fix.exitCode() <= 1, fix.all());
        Images.assertClean(img);
    }

    @Test
    void aReadOnlyMountLeavesTheOrphanFileAlone() throws Exception {
        Path img = craftedImage("ro.img", List.of("-b", "4096"));
        long del = Images.inodeOf(img, "/del");
        Images.debugfs(img, "unlink /del", "sif <" + del + "> links_count 0", "feature orphan_present");
        putInSlot(img, 0, 9, del);
        String before = Images.sha256(img);
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults().withReadOnly(true))) {
            assertTrue(fs.isReadOnly());
            fs.stat(del);
        }
        assertEquals(before, Images.sha256(img));
        assertTrue(features(img).contains("orphan_present"));
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly());
        }
        assertNotEquals(before, Images.sha256(img));
        assertFalse(features(img).contains("orphan_present"));
        Images.assertClean(img);
    }

    // ---------------------------------------------------------------- ext4j's own orphans

    /**
     * ext4j keeps its own orphans on the s_last_orphan chain; on an orphan_file filesystem the
     * kernel and e2fsck process that chain too. A crash copy with an orphan on the chain is
     * repaired by e2fsck and finished by ext4j's next mount, and the unmounted image is clean.
     */
    @Test
    void ext4jOrphansGoOnTheChainOfAnOrphanFileFilesystem() throws Exception {
        Path img = Images.mkfs(work.resolve("chain.img"), "64M", List.of("-b", "4096", "-O", "orphan_file"), null);
        Path crashed = work.resolve("chain-crashed.img");
        long ino;
        MountOptions unjournaled = MountOptions.defaults().withJournal(false); // the chain is read at home while mounted
        try (Ext4FileSystem fs = Ext4FileSystem.open(img, unjournaled)) {
            ino = fs.mknod(Ext4FileSystem.ROOT_INO, name("f"), 0100644, 0, 0, 0, 0);
            fs.write(ino, 0, ByteBuffer.wrap(pattern(300_000, 9)));
            fs.open(ino);
            fs.unlink(Ext4FileSystem.ROOT_INO, name("f"));
            fs.sync();
            Files.copy(img, crashed);
            Map<String, String> h = Images.dumpe2fsHeader(crashed);
            assertEquals(ino, Long.parseLong(h.get("First orphan inode").trim()));
            assertFalse(features(crashed).contains("orphan_present"), "ext4j does not use the orphan file");
        }
        Images.assertClean(img);
        Path byFsck = Images.copy(crashed, work.resolve("chain-fsck.img"));
        Images.Result fix = Images.run(List.of("e2fsck", "-fy", byFsck.toString()));
        assertTrue(fix.exitCode() <= 1, fix.all());
        Images.assertClean(byFsck);

        try (Ext4FileSystem fs = Ext4FileSystem.open(crashed, MountOptions.defaults())) {
            assertFalse(fs.isReadOnly());
        }
        assertEquals(freeBlocks(byFsck), freeBlocks(crashed), "ext4j freed what e2fsck freed");
        Images.assertClean(crashed);
    }
}

package dev.ext4j.journal;

import static org.junit.jupiter.api.Assertions.assertArrayEquals;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import dev.ext4j.Errno;
import dev.ext4j.format.Feature;
import dev.ext4j.format.JournalBlock;
import dev.ext4j.format.Superblock;
import dev.ext4j.io.FileBlockDevice;
import dev.ext4j.testutil.Expect;
import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Transactions written by {@link JournalLog} into a real mkfs'd image, then replayed three ways:
 * by e2fsck, by ext4j's mount and by the kernel. All three must leave the same home blocks, and
 * those must be what the transactions said, less what was revoked.
 */
class JournalLogTest {
    @TempDir
    Path dir;

    static Stream<Arguments> variants() {
        return Stream.of(
                Arguments.of("1k-csum-64bit", "16M", List.of("-b", "1024", "-O", "metadata_csum,64bit")),
                Arguments.of("4k-nocsum-32bit", "32M", List.of("-b", "4096", "-O", "^metadata_csum,^64bit")),
                Arguments.of("4k-csum-32bit", "32M", List.of("-b", "4096", "-O", "metadata_csum,^64bit")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("variants")
    void loggedTransactionsReplayAlikeInE2fsckExt4jAndTheKernel(String name, String size, List<String> mkfs) throws Exception {
        Path img = Images.mkfs(dir.resolve(name + ".img"), size, mkfs, null);
        int bs = Integer.parseInt(Images.dumpe2fsHeader(img).get("Block size"));
        long count = Long.parseLong(Images.dumpe2fsHeader(img).get("Block count"));
        long homeFirst = count - 200;
        int homes = 190; // free blocks at the end of the last group
        Map<Long, byte[]> expected = new HashMap<>();
        for (long h = homeFirst; h < homeFirst + homes; h++) {
            expected.put(h, Images.readAt(img, h * bs, bs));
        }
        Random rnd = new Random(name.hashCode());
        try (FileBlockDevice dev = FileBlockDevice.open(img, false)) {
            ByteBuffer raw = ByteBuffer.allocate(Superblock.SIZE);
            dev.read(Superblock.OFFSET_IN_IMAGE, raw);
            Superblock sb = new Superblock(raw.flip());
            Journal journal = Journal.open(dev, sb);
            JournalLog log = JournalLog.open(journal, sb.has(Feature.METADATA_CSUM), sb.has(Feature.BIT64));
            long logEnd = journal.superblock().logEnd();
            Expect.errno(Errno.EINVAL, () -> log.commit(log.nextTid() + 1, List.of(), List.of()));

            // checkpointed transactions until the next one would cross the end of the log
            boolean wrapped = false;
            while (!wrapped || logEnd - log.head() > 40) {
                long before = log.head();
                List<JournalLog.LogBlock> tx = randomBlocks(rnd, homeFirst, homes, 30, bs);
                int tid = log.nextTid();
                log.commit(tid, tx, List.of());
                for (JournalLog.LogBlock b : tx) {
                    dev.write(b.homeBlock() * bs, ByteBuffer.wrap(b.contents()));
                    expected.put(b.homeBlock(), b.contents());
                }
                log.checkpointed(tid);
                wrapped |= log.head() < before;
                assertTrue(log.isEmpty());
                assertEquals(logEnd - journal.superblock().first() - 1, log.freeSpace());
            }

            // then transactions left for recovery, the first one crossing the end of the log
            long x = homeFirst, y = homeFirst + 1, z = homeFirst + 2;
            List<JournalLog.LogBlock> t1 = randomBlocks(rnd, homeFirst + 3, homes - 3, 60, bs);
            t1.add(new JournalLog.LogBlock(x, block(rnd, bs, true)));
            t1.add(new JournalLog.LogBlock(y, block(rnd, bs, false)));
            t1.add(new JournalLog.LogBlock(z, block(rnd, bs, false)));
            long free = log.freeSpace();
            long t1Start = log.head();
            log.commit(log.nextTid(), t1, List.of());
            assertTrue(log.head() < t1Start, "transaction 1 wraps around the end of the log");
            assertEquals(free - log.blocksNeeded(t1.size(), 0), log.freeSpace());
            for (JournalLog.LogBlock b : t1) {
                if (b.homeBlock() != x && b.homeBlock() != z) {
                    expected.put(b.homeBlock(), b.contents());
                }
            }
            // transaction 2 revokes x and z: their copies in transaction 1 must not be replayed
            List<JournalLog.LogBlock> t2 = randomBlocks(rnd, homeFirst + 3, homes - 3, 20, bs);
            log.commit(log.nextTid(), t2, List.of(x, z));
            t2.forEach(b -> expected.put(b.homeBlock(), b.contents()));
            // transaction 3 logs z again after the revoke: that copy counts
            byte[] z3 = block(rnd, bs, true);
            log.commit(log.nextTid(), List.of(new JournalLog.LogBlock(z, z3)), List.of());
            expected.put(z, z3);
            assertTrue(!log.isEmpty());
            long revokes = log.blocksNeeded(0, 2000) - 1;
            assertTrue(revokes >= 2, "2000 revokes take several revoke blocks");
            Expect.errno(Errno.ENOSPC, () -> {
                while (true) {
                    log.commit(log.nextTid(), List.of(), List.of(homeFirst)); // fills the log with revoke-only transactions
                    if (log.freeSpace() < 2) {
                        log.commit(log.nextTid(), List.of(), List.of(homeFirst));
                    }
                }
            });
            assertTrue(log.freeSpace() >= 0);
        }
        // x is revoked by every transaction after 1 and never logged again: it keeps its checkpointed contents
        Images.debugfs(img, "feature needs_recovery");

        Path byE2fsck = JournalFixture.e2fsckReplayed(img, dir);
        Path byExt4j = Images.copy(img, dir.resolve(name + ".ext4j.img"));
        JournalFixture.replayWithExt4j(byExt4j);
        assertHomes("e2fsck", byE2fsck, expected, bs);
        assertHomes("ext4j", byExt4j, expected, bs);
        JournalFixture.assertSameBlocks(byE2fsck, byExt4j, bs, JournalFixture.superblockAndJournal(img, bs));
        Images.assertClean(byExt4j);
        if (JournalFixture.canKernelMount()) {
            Path byKernel = Images.copy(img, dir.resolve(name + ".kernel.img"));
            JournalFixture.withKernelMount(byKernel, dir.resolve("mnt"), "loop", () -> { });
            assertHomes("the kernel", byKernel, expected, bs);
            Images.assertClean(byKernel);
        }
        assumeTrue(JournalFixture.canKernelMount(), "the kernel's replay needs root and loop devices");
    }

    private static void assertHomes(String who, Path img, Map<Long, byte[]> expected, int bs) {
        for (var e : expected.entrySet()) {
            assertArrayEquals(e.getValue(), Images.readAt(img, e.getKey() * bs, bs), who + ": home block " + e.getKey());
        }
    }

    private static List<JournalLog.LogBlock> randomBlocks(Random rnd, long first, int span, int n, int bs) {
        List<JournalLog.LogBlock> out = new ArrayList<>();
        for (int i = 0; i < n; i++) {
            out.add(new JournalLog.LogBlock(first + rnd.nextInt(span), block(rnd, bs, rnd.nextInt(4) == 0)));
        }
        return out;
    }

    /** Random contents; with {@code magic}, starting with the jbd2 magic so the log must escape it. */
    private static byte[] block(Random rnd, int bs, boolean magic) {
        byte[] b = new byte[bs];
        rnd.nextBytes(b);
        if (magic) {
            ByteBuffer.wrap(b).putInt(0, JournalBlock.MAGIC);
        }
        return b;
    }
}

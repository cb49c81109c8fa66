package dev.ext4j.format;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * The MMP block as mkfs.ext4 writes it, field by field against debugfs' {@code dump_mmp}; the
 * checksum {@link MmpBlock} computes is the one e2fsprogs stores; and a block changed through the
 * view (a sequence, names, a checksum) is one debugfs reads back and e2fsck accepts.
 */
class MmpBlockTest {
    @TempDir
    Path work;

    @ParameterizedTest(name = "{0}-byte blocks, metadata_csum {1}")
    @CsvSource({"1024, true", "4096, true", "4096, false"})
    void blockMatchesE2fsprogsAndWritesBackAsItReads(int blockSize, boolean csum) throws Exception {
        String features = csum ? "mmp" : "mmp,^metadata_csum";
        Path img = Images.mkfs(work.resolve("mmp.img"), "32M",
                List.of("-b", String.valueOf(blockSize), "-O", features, "-E", "mmp_update_interval=7"), null);
        byte[] image = Files.readAllBytes(img);
        Superblock sb = new Superblock(ByteBuffer.wrap(image, Superblock.OFFSET_IN_IMAGE, Superblock.SIZE).slice());
        Map<String, String> dump = dumpMmp(img);
        assertEquals(Long.parseLong(dump.get("block_number")), sb.mmpBlock());
        assertEquals(7, sb.mmpUpdateInterval());

        MmpBlock b = MmpBlock.of(ByteBuffer.wrap(image, (int) (sb.mmpBlock() * blockSize), blockSize).slice());
        assertEquals(MmpBlock.MAGIC, b.magic());
        assertEquals(0x004D4D50, Integer.decode(dump.get("magic")));
        assertEquals(MmpBlock.SEQ_CLEAN, b.seq(), "a new filesystem is not held");
        assertEquals(Long.parseLong(dump.get("sequence"), 16), Integer.toUnsignedLong(b.seq()));
        assertEquals(Long.parseLong(dump.get("check_interval")), b.checkInterval());
        assertEquals(dump.get("node_name"), b.nodeName());
        assertEquals(dump.get("device_name"), b.deviceName());
        assertEquals(Long.parseLong(dump.get("time").split(" ")[0]), b.time());
        if (csum) {
            assertEquals(Long.decode(dump.get("checksum")), Integer.toUnsignedLong(b.storedChecksum()));
            assertEquals(b.storedChecksum(), b.computeChecksum(sb.checksumSeed()));
        }

        b.setSeq(MmpBlock.SEQ_CLEAN); // as ext4j's unmount leaves it, with its own names and time
        b.setNodeName("node-" + "n".repeat(80)); // cut to 64 bytes
        b.setDeviceName("/a/long/directory/path/that/does/not/fit/image.img"); // the last 32 bytes kept
        b.setTime(1_700_000_000L);
        b.setCheckInterval(12);
        int stale = b.storedChecksum();
        b.updateChecksum(csum ? sb.checksumSeed() : 0);
        if (csum) {
            assertNotEquals(stale, b.storedChecksum());
        }
        Images.writeAt(img, sb.mmpBlock() * blockSize, copy(image, sb.mmpBlock() * blockSize, blockSize));
        dump = dumpMmp(img);
        assertEquals("ff4d4d50", dump.get("sequence"));
        assertEquals("node-" + "n".repeat(59), dump.get("node_name"));
        assertEquals("path/that/does/not/fit/image.img", dump.get("device_name"));
        assertEquals("12", dump.get("check_interval"));
        assertTrue(dump.get("time").startsWith("1700000000 "), dump.get("time"));
        Images.assertClean(img); // e2fsck reads the MMP block and checks its checksum
    }

    private static byte[] copy(byte[] image, long offset, int len) {
        byte[] b = new byte[len];
        System.arraycopy(image, (int) offset, b, 0, len);
        return b;
    }

    /** {@code debugfs -R dump_mmp}: "key: value" lines. */
    private static Map<String, String> dumpMmp(Path img) {
        Map<String, String> out = new LinkedHashMap<>();
        for (String line : Images.debugfsRead(img, "dump_mmp").split("\n")) {
            int colon = line.indexOf(':');
            if (colon > 0 && !line.startsWith(" ")) {
                out.put(line.substring(0, colon).strip(), line.substring(colon + 1).strip());
            }
        }
        return out;
    }
}

package dev.ext4j.format;

import static org.junit.jupiter.api.Assertions.assertEquals;

import dev.ext4j.testutil.Images;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

/**
 * The orphan file's blocks as mkfs.ext4 writes them: every slot free, the tail magic, and a
 * checksum over the physical block number and the slots that {@link OrphanBlock} computes the same.
 */
class OrphanBlockTest {
    @TempDir
    Path work;

    @ParameterizedTest(name = "{0}-byte blocks")
    @ValueSource(ints = {1024, 4096})
    void freshBlocksMatchE2fsprogs(int blockSize) throws Exception {
        Path img = Images.mkfs(work.resolve("of.img"), "64M", List.of("-b", String.valueOf(blockSize), "-O", "orphan_file"), null);
        byte[] image = Files.readAllBytes(img);
        Superblock sb = new Superblock(ByteBuffer.wrap(image, 1024, 1024).slice());
        sb.validate();
        long ino = sb.orphanFileInum();
        assertEquals(Long.parseLong(Images.dumpe2fsHeader(img).get("Orphan file inode")), ino);
        String stat = Images.stat(img, "<" + ino + ">");
        long generation = Images.statNumber(stat, "Generation");
        int seed = Checksums.crc32cLe32(Checksums.crc32cLe32(sb.checksumSeed(), (int) ino), (int) generation);

        List<Long> blocks = Images.blocks(img, "<" + ino + ">");
        assertEquals(Images.statNumber(stat, "Size") / blockSize, blocks.size());
        assertEquals((blockSize - 8) / 4, OrphanBlock.slotsPerBlock(blockSize));
        for (long pblk : blocks) {
            ByteBuffer b = ByteBuffer.wrap(image, (int) (pblk * blockSize), blockSize).slice().order(ByteOrder.LITTLE_ENDIAN);
            OrphanBlock ob = OrphanBlock.of(b, blockSize);
            assertEquals(OrphanBlock.MAGIC, ob.magic(), "block " + pblk);
            assertEquals(b.getInt(blockSize - 8), ob.magic());
            for (int i = 0; i < ob.slots(); i++) {
                assertEquals(0, ob.slot(i));
            }
            assertEquals(ob.storedChecksum(), ob.computeChecksum(seed, pblk), "checksum of block " + pblk);
            assertEquals(b.getInt(blockSize - 4), ob.storedChecksum());
        }
    }
}

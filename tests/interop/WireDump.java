// Resolves a handle with the Handle.Net Java client (the server it asks comes from the client
// configuration directory in -Dnet.handle.configDir) and prints each value as its index and
// its whole wire encoding in hex (type, data, permissions, TTL, timestamp, references), one
// value a line in index order, so two servers' answers can be compared byte for byte.
//   java -cp HANDLE_JARS WireDump.java HANDLE
// Prints "rc N" instead when the server answers with an error.
import net.handle.hdllib.*;

public class WireDump {
  public static void main(String[] args) throws Exception {
    HandleResolver r = new HandleResolver();
    ResolutionRequest req = new ResolutionRequest(Util.encodeString(args[0]), null, null, null);
    req.authoritative = true;
    AbstractResponse resp = r.processRequest(req);
    if (resp.responseCode != AbstractMessage.RC_SUCCESS) {
      System.out.println("rc " + resp.responseCode);
      return;
    }
    HandleValue[] vals = ((ResolutionResponse) resp).getHandleValues();
    java.util.Arrays.sort(vals, (a, b) -> Integer.compare(a.getIndex(), b.getIndex()));
    for (HandleValue v : vals) {
      byte[] buf = new byte[Encoder.calcStorageSize(v)];
      Encoder.encodeHandleValue(buf, 0, v);
      System.out.println(v.getIndex() + " " + Util.decodeHexString(buf, false));
    }
  }
}
